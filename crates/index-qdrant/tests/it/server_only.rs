//! The server engine's checks that need no Qdrant: URLs, handshakes, credentials. They
//! run against real sockets on 127.0.0.1.

use std::time::Duration;

use index_qdrant::{ApiKey, EngineConfig, Index, IndexConfig, IndexError};

fn server_config(url: String, api_key: Option<&str>) -> IndexConfig {
    IndexConfig {
        engine: EngineConfig::Server {
            url,
            api_key: api_key.map(ApiKey::new),
            timeout: Duration::from_secs(5),
        },
        collection: "crm_chunks".to_owned(),
    }
}

async fn open_err(config: IndexConfig) -> IndexError {
    match Index::open(config).await {
        Ok(_) => panic!("opening should have failed"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn the_rest_port_gets_a_hint_about_grpc() {
    let err = open_err(server_config("http://127.0.0.1:6333".into(), None)).await;
    let text = err.to_string();
    assert!(matches!(err, IndexError::RestPort { .. }), "{text}");
    assert!(text.contains("http://127.0.0.1:6334"), "{text}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_http1_server_is_recognised_and_the_key_stays_secret() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "qdrant - vector search engine" });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let err = open_err(server_config(
        format!("http://{addr}"),
        Some("top-secret-key"),
    ))
    .await;
    server.abort();
    let text = err.to_string();
    assert!(matches!(err, IndexError::NotGrpc { .. }), "{text}");
    assert!(text.contains("6334"), "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(!text.contains("top-secret-key"), "{text}");
    assert!(!format!("{err:?}").contains("top-secret-key"));
}

#[tokio::test]
async fn a_server_that_only_speaks_http1_is_recognised() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // What Qdrant's REST port (actix, HTTP/1 only) does with an HTTP/2 preface.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\nconnection: close\r\n\r\nBad Request",
                )
                .await;
            let _ = socket.shutdown().await;
        }
    });
    let err = open_err(server_config(format!("http://{addr}"), None)).await;
    server.abort();
    let text = err.to_string();
    assert!(matches!(err, IndexError::NotGrpc { .. }), "{text}");
    assert!(text.contains("HTTP/1"), "{text}");
}

#[tokio::test]
async fn a_dead_port_is_unreachable_and_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = open_err(server_config(format!("http://127.0.0.1:{port}"), None)).await;
    let text = err.to_string();
    assert!(matches!(err, IndexError::Unreachable { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_key_that_cannot_be_a_header_is_refused_without_showing_it() {
    let err = open_err(server_config(
        "http://127.0.0.1:6334".into(),
        Some("s3cret-with-newline\n"),
    ))
    .await;
    let text = err.to_string();
    assert!(matches!(err, IndexError::InvalidConfig { .. }), "{text}");
    assert!(text.contains("trailing newline"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn urls_with_credentials_or_odd_schemes_are_refused_without_showing_them() {
    let err = open_err(server_config("grpc://user:pw@127.0.0.1:6334".into(), None)).await;
    let text = err.to_string();
    assert!(matches!(err, IndexError::InvalidConfig { .. }), "{text}");
    assert!(!text.contains("pw@"), "{text}");
}
