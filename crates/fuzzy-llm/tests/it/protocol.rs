//! The chat protocol itself: request shape, optional fields a server rejects, TLS, keys,
//! model names, dead endpoints.

use embed::http::{ApiKey, HttpClient};
use fuzzy_llm::FuzzyError;
use fuzzy_llm::chat::{ChatClient, ChatConfig, ChatMessage, Role};
use fuzzy_llm::runner::adjudicate;
use fuzzy_llm::testing::{
    Reply, ScriptedChatServer, ScriptedServerConfig, SeenRequest, answer_json, router,
};

use crate::servers::{dead_port, serve_tls};
use crate::support::{Crm, MODEL, client, client_with, http_config, options};

fn no(request: &SeenRequest) -> Reply {
    let (a, b) = request.pair().unwrap();
    Reply::content(answer_json(a, b, false, 0.9, "scripted"))
}

#[tokio::test]
async fn the_request_asks_for_deterministic_non_thinking_json() {
    let crm = Crm::new();
    crm.pairs(1);
    let server = ScriptedChatServer::start(MODEL, |r: &SeenRequest, _| no(r))
        .await
        .unwrap();
    adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap();
    let body = &server.stats().seen()[0].body;
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["stream"], false);
    assert!(body["max_tokens"].as_u64().unwrap() > 0);
    assert_eq!(body["chat_template_kwargs"]["enable_thinking"], false);
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    let schema = &format["json_schema"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "entity_a",
        "entity_b",
        "same_entity",
        "confidence",
        "reason",
    ] {
        assert!(required.contains(&field), "{field}");
    }
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .contains("untrusted")
    );
    assert_eq!(messages[1]["role"], "user");
}

/// A server that rejects `field` with a 400 naming it, the way OpenAI or an old vLLM does.
async fn rejecting(field: &'static str) -> ScriptedChatServer {
    ScriptedChatServer::start(MODEL, move |r: &SeenRequest, _| {
        if r.body.get(field).is_some() {
            Reply::status(
                400,
                format!(
                    "{{\"error\":{{\"message\":\"Unrecognized request argument supplied: {field}\"}}}}"
                ),
            )
        } else {
            no(r)
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_server_that_rejects_chat_template_kwargs_is_asked_again_without_them() {
    let crm = Crm::new();
    crm.pairs(3);
    let server = rejecting("chat_template_kwargs").await;
    let summary = adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap();
    assert_eq!(summary.rejected, 3, "{summary:?}");
    let seen = server.stats().seen();
    assert_eq!(
        seen.len(),
        4,
        "one rejected request, then one per candidate"
    );
    assert!(seen[0].body.get("chat_template_kwargs").is_some());
    assert!(
        seen[1..]
            .iter()
            .all(|r| r.body.get("chat_template_kwargs").is_none())
    );
    assert!(seen.iter().all(|r| r.body.get("response_format").is_some()));
}

#[tokio::test]
async fn a_server_without_json_schema_support_still_gets_validated_answers() {
    let crm = Crm::new();
    crm.pairs(2);
    let server = rejecting("response_format").await;
    let summary = adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap();
    assert_eq!(summary.rejected, 2);
    let seen = server.stats().seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[1..]
            .iter()
            .all(|r| r.body.get("response_format").is_none())
    );
}

#[tokio::test]
async fn other_400s_are_not_retried_and_fail_the_candidate_request() {
    let crm = Crm::new();
    let ids = crm.pairs(1);
    let server = ScriptedChatServer::start(MODEL, |_: &SeenRequest, _| {
        Reply::status(400, "{\"error\":{\"message\":\"context length exceeded\"}}")
    })
    .await
    .unwrap();
    let summary = adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap();
    assert_eq!(summary.request_failures, 1);
    assert_eq!(server.stats().requests(), 1, "a 400 is final");
    assert_eq!(crm.get(ids[0]).raw_reply, None);
}

#[tokio::test]
async fn a_self_signed_certificate_fails_clearly_when_verified_and_works_when_not() {
    let crm = Crm::new();
    let id = crm.pairs(1)[0];
    let (app, stats) = router(ScriptedServerConfig::new(MODEL), |r: &SeenRequest, _| no(r));
    let server = serve_tls(app).await;

    let verified = client(&server.url);
    let err = adjudicate(&crm.store, &verified, &options(), &())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(text.contains("verify_tls"), "{text}");
    assert_eq!(stats.requests(), 0);
    assert_eq!(
        crm.count("SELECT count(*) FROM ingest_runs"),
        0,
        "nothing started"
    );

    let mut config = http_config(&server.url);
    config.verify_tls = false;
    let summary = adjudicate(&crm.store, &client_with(config), &options(), &())
        .await
        .unwrap();
    assert_eq!(summary.rejected, 1);
    assert_eq!(crm.get(id).decided_by.as_deref(), Some("llm:judge-1"));
}

#[tokio::test]
async fn a_wrong_model_name_fails_up_front_with_what_the_server_offers() {
    let crm = Crm::new();
    crm.pairs(1);
    let server = ScriptedChatServer::start("Qwen/Qwen3-8B", |r: &SeenRequest, _| no(r))
        .await
        .unwrap();
    let err = adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap_err();
    assert!(matches!(err, FuzzyError::Http(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("judge-1") && text.contains("Qwen/Qwen3-8B"),
        "{text}"
    );
    assert_eq!(server.stats().requests(), 0);
}

#[tokio::test]
async fn the_key_is_sent_as_a_bearer_and_never_shown() {
    let crm = Crm::new();
    crm.pairs(1);
    let mut config = ScriptedServerConfig::new(MODEL);
    config.api_key = Some("sk-right-key".to_owned());
    let server = ScriptedChatServer::start_with(config, |r: &SeenRequest, _| no(r))
        .await
        .unwrap();

    let mut wrong = http_config(server.url());
    wrong.api_key = Some(ApiKey::new("sk-wrong-key"));
    let err = adjudicate(&crm.store, &client_with(wrong), &options(), &())
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("sk-wrong-key"), "{text}");

    let mut right = http_config(server.url());
    right.api_key = Some(ApiKey::new("sk-right-key"));
    let client = client_with(right);
    assert!(!format!("{client:?}").contains("sk-right-key"));
    let summary = adjudicate(&crm.store, &client, &options(), &())
        .await
        .unwrap();
    assert_eq!(summary.rejected, 1);
    assert_eq!(
        server.stats().seen()[0].authorization.as_deref(),
        Some("Bearer sk-right-key")
    );
}

#[tokio::test]
async fn a_dead_endpoint_fails_with_a_connect_error() {
    let crm = Crm::new();
    let id = crm.pairs(1)[0];
    let mut config = http_config(&format!("http://127.0.0.1:{}", dead_port().await));
    config.max_retries = 1;
    let err = adjudicate(&crm.store, &client_with(config), &options(), &())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("could not connect"), "{text}");
    assert_eq!(crm.get(id).raw_reply, None);
}

#[tokio::test]
async fn a_body_that_is_not_a_completion_is_a_request_failure() {
    let server = ScriptedChatServer::start(MODEL, |_: &SeenRequest, _| {
        Reply::RawBody("<html>proxy login</html>".to_owned())
    })
    .await
    .unwrap();
    let client = client(server.url());
    let err = client
        .complete(&[ChatMessage::new(Role::User, "hi")], None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not the expected JSON") && text.contains("proxy login"),
        "{text}"
    );
}

#[tokio::test]
async fn an_empty_model_name_is_refused() {
    let http = HttpClient::new(http_config("http://127.0.0.1:1")).unwrap();
    let err = ChatClient::new(http, ChatConfig::new(" ")).unwrap_err();
    assert!(err.to_string().contains("chat_model"), "{err}");
}
