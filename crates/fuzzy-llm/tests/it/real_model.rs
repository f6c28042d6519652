//! One run against a real model behind a real server: llama.cpp (through xllamacpp)
//! serving SmolLM2-135M-Instruct. Its judgments are weak, so this checks the protocol,
//! the validation and the bookkeeping, not its verdicts. Needs `scripts/setup-python.sh`
//! (which runs `scripts/fetch-chat-model.sh`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crm_store::phase0::{self, CandidateStatus, RunStatus};
use embed::http::HttpClient;
use fuzzy_llm::chat::{ChatClient, ChatConfig};
use fuzzy_llm::runner::adjudicate;

use crate::servers::{python_venv, repo_root, wait_until};
use crate::support::{Crm, http_config, options};

const ALIAS: &str = "smollm2";

/// The GGUF that `scripts/fetch-chat-model.sh` puts in place: `$CRM_CHAT_MODEL_DIR`, else
/// its default directory. Panics with the command to run when it is missing.
fn chat_model() -> PathBuf {
    let dir = std::env::var_os("CRM_CHAT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/crm-substrate/models/smollm2-135m")
        });
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "the test chat model is missing ({} not found): run `scripts/fetch-chat-model.sh` (or \
         `scripts/setup-python.sh`, which runs it), or point CRM_CHAT_MODEL_DIR at it",
        path.display()
    );
    path
}

/// The llama.cpp server; killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_llama() -> LlamaServer {
    let model = chat_model();
    let python = python_venv().join("bin/python");
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let child = Command::new(python)
        .arg(repo_root().join("scripts/python/serve_llama.py"))
        .args(["--model", model.to_str().unwrap()])
        .args([
            "--port",
            &port.to_string(),
            "--alias",
            ALIAS,
            "--ctx",
            "4096",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let health = format!("{}/health", server.url);
    let http = reqwest::Client::new();
    let ready = wait_until(Duration::from_secs(120), || {
        let (http, health) = (http.clone(), health.clone());
        async move {
            http.get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    assert!(
        ready,
        "llama.cpp did not become healthy at {health} within 120 s"
    );
    server
}

#[tokio::test]
async fn a_real_model_behind_llama_cpp_gets_asked_and_every_answer_is_accounted_for() {
    let server = start_llama().await;
    let crm = Crm::new();
    let a = crm.person(1, "Robert Smith", "robert.smith@acme.com", None);
    let b = crm.person(2, "Bob Smith", "bob.smith@acme.com", None);
    let c = crm.person(3, "Alice Wong", "alice@lumen.vc", None);
    let d = crm.person(4, "Alicia Wang", "awang@gmail.com", None);
    let ids = [crm.candidate(&a, &b, 0.9), crm.candidate(&c, &d, 0.8)];

    let mut http = http_config(&server.url);
    // Two cores, a few tokens a second under load: be patient, but do not retry a slow
    // answer.
    http.request_timeout = Duration::from_secs(300);
    http.max_retries = 1;
    let mut chat = ChatConfig::new(ALIAS);
    chat.max_tokens = 200;
    let client = ChatClient::new(HttpClient::new(http).unwrap(), chat).unwrap();

    let summary = adjudicate(&crm.store, &client, &options(), &())
        .await
        .unwrap();

    // The protocol worked: the model was found, asked twice, and answered twice.
    assert_eq!(summary.asked, 2, "{summary:?}");
    assert_eq!(summary.request_failures, 0, "{summary:?}");
    assert_eq!(summary.aborted, None);
    // Every answer landed in exactly one bucket, whatever the model said.
    assert_eq!(
        summary.merged + summary.rejected + summary.uncertain + summary.invalid_replies,
        2,
        "{summary:?}"
    );
    for id in ids {
        let cand = crm.get(id);
        let reply = cand.raw_reply.clone().unwrap_or_default();
        assert!(
            !reply.trim().is_empty(),
            "candidate {id} kept no reply: {cand:?}"
        );
        match cand.status {
            CandidateStatus::Pending => assert_eq!(cand.decided_by, None),
            CandidateStatus::Merged | CandidateStatus::Rejected | CandidateStatus::Error => {
                assert_eq!(cand.decided_by.as_deref(), Some("llm:smollm2"), "{cand:?}");
            }
        }
    }
    let conn = crm.store.reader().unwrap();
    let run = &phase0::recent_runs(&conn, Some("fuzzy"), 1).unwrap()[0];
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.counts["asked"], 2);
    assert_eq!(
        crm.count("SELECT count(*) FROM entity_merges"),
        i64::try_from(summary.merged).unwrap()
    );
}
