//! A chat-completions client (`POST /v1/chat/completions`) on the shared HTTP layer.
//!
//! Transport, retries, backoff, TLS and the concurrency limit all belong to
//! [`embed::http::HttpClient`]; this module only knows the chat protocol: the request
//! body (temperature 0, a token cap, an optional JSON-schema `response_format`, and
//! `chat_template_kwargs: {"enable_thinking": false}` for Qwen3 on vLLM/SGLang), the
//! reply's shape, and what to do when a server rejects one of the optional fields.
//!
//! Servers differ in what they accept. OpenAI itself rejects `chat_template_kwargs`
//! ("Unrecognized request argument"), and an old server may not know `json_schema`. When
//! a 400/422 names one of those two optional fields, the client drops that field, logs a
//! warning once, and retries the request; later requests leave it out from the start.

use std::sync::atomic::{AtomicBool, Ordering};

use embed::http::{HttpClient, HttpError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FuzzyError;

/// The chat API path, relative to the server root.
pub const CHAT_COMPLETIONS_PATH: &str = "v1/chat/completions";

/// How to talk to the chat model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Model name, as the server's `GET /v1/models` lists it.
    pub model: String,
    /// Send `chat_template_kwargs: {"enable_thinking": false}` (Qwen3 non-thinking mode
    /// on vLLM/SGLang). Dropped automatically for a server that rejects it.
    pub disable_thinking: bool,
    /// Ask for the answer's JSON schema through `response_format`. Dropped automatically
    /// for a server that rejects it; the answer is validated either way.
    pub json_schema: bool,
    /// `max_tokens` of one answer. The answer is a small JSON object; a cap keeps a
    /// rambling model from holding a slot for minutes.
    pub max_tokens: u32,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            disable_thinking: true,
            json_schema: true,
            max_tokens: 400,
        }
    }
}

impl ChatConfig {
    /// The defaults for `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The question (here: the two records, as data).
    User,
    /// A model's earlier answer.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What the server answered, before any validation of the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    /// The first choice's message content; `None` when the server sent none.
    pub content: Option<String>,
    /// The first choice's `finish_reason` (`stop`, `length`, ...).
    pub finish_reason: Option<String>,
    /// The model name the server reported.
    pub model: Option<String>,
    /// The whole choice as JSON text, kept when there is no content to show instead.
    pub raw_choice: Option<String>,
}

#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    temperature: f32,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_template_kwargs: Option<TemplateKwargs>,
}

#[derive(Serialize)]
struct TemplateKwargs {
    enable_thinking: bool,
}

#[derive(Deserialize)]
struct CompletionResponse {
    #[serde(default)]
    choices: Vec<Value>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

/// An optional request field that a server may reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Optional {
    TemplateKwargs,
    ResponseFormat,
}

impl Optional {
    fn field(self) -> &'static str {
        match self {
            Self::TemplateKwargs => "chat_template_kwargs",
            Self::ResponseFormat => "response_format",
        }
    }

    /// Whether an error body blames this field.
    fn named_in(self, body: &str) -> bool {
        let body = body.to_ascii_lowercase();
        match self {
            Self::TemplateKwargs => {
                body.contains("chat_template_kwargs") || body.contains("enable_thinking")
            }
            Self::ResponseFormat => {
                body.contains("response_format") || body.contains("json_schema")
            }
        }
    }
}

/// A client for one chat model on one OpenAI-compatible server.
#[derive(Debug)]
pub struct ChatClient {
    http: HttpClient,
    config: ChatConfig,
    send_template_kwargs: AtomicBool,
    send_response_format: AtomicBool,
}

impl ChatClient {
    /// A client for `config.model` over `http` (which carries the URL, key, TLS switch,
    /// timeouts, retry policy and concurrency limit).
    pub fn new(http: HttpClient, config: ChatConfig) -> Result<Self, FuzzyError> {
        if config.model.trim().is_empty() {
            return Err(FuzzyError::InvalidConfig(
                "the chat model name is empty: set spark_control.chat_model".to_owned(),
            ));
        }
        if config.max_tokens == 0 {
            return Err(FuzzyError::InvalidConfig(
                "max_tokens must be at least 1".to_owned(),
            ));
        }
        Ok(Self {
            send_template_kwargs: AtomicBool::new(config.disable_thinking),
            send_response_format: AtomicBool::new(config.json_schema),
            http,
            config,
        })
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// The configuration.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The shared HTTP client underneath.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Checks that the server offers the configured model (`GET /v1/models`), so a wrong
    /// name fails once, up front, with the list of what is offered. A server without
    /// `/v1/models` (404/405) is given the benefit of the doubt.
    pub async fn ensure_model(&self) -> Result<(), FuzzyError> {
        match self.http.list_models().await {
            Ok(offered) => Ok(self
                .http
                .ensure_model_offered(&self.config.model, &offered)?),
            Err(err) if matches!(err.status(), Some(404 | 405)) => {
                tracing::warn!(error = %err, "the server does not list its models; not checking the model name");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// One chat completion. `response_format` is sent when configured and not yet
    /// rejected by this server.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        response_format: Option<&Value>,
    ) -> Result<ChatReply, FuzzyError> {
        // Each retry here follows a 400 that named a field this request sent, and drops
        // that field: with two optional fields, at most three attempts.
        loop {
            let kwargs = self.send_template_kwargs.load(Ordering::Relaxed);
            let format = self.send_response_format.load(Ordering::Relaxed);
            let body = CompletionRequest {
                model: &self.config.model,
                messages,
                temperature: 0.0,
                max_tokens: self.config.max_tokens,
                stream: false,
                response_format: response_format.filter(|_| format),
                chat_template_kwargs: kwargs.then_some(TemplateKwargs {
                    enable_thinking: false,
                }),
            };
            match self
                .http
                .post_json::<_, CompletionResponse>(CHAT_COMPLETIONS_PATH, &body)
                .await
            {
                Ok(response) => return Ok(reply_of(response)),
                Err(err) => {
                    let sent = [
                        (
                            Optional::TemplateKwargs,
                            body.chat_template_kwargs.is_some(),
                        ),
                        (Optional::ResponseFormat, body.response_format.is_some()),
                    ];
                    match rejected_field(&err, &sent) {
                        Some(field) => self.drop_optional(field, &err),
                        None => {
                            return Err(self
                                .http
                                .explain_model_error(&self.config.model, err)
                                .await
                                .into());
                        }
                    }
                }
            }
        }
    }

    fn drop_optional(&self, field: Optional, err: &HttpError) {
        let flag = match field {
            Optional::TemplateKwargs => &self.send_template_kwargs,
            Optional::ResponseFormat => &self.send_response_format,
        };
        if flag.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                field = field.field(),
                model = %self.config.model,
                error = %err,
                "the chat server rejected an optional request field; retrying without it"
            );
        }
    }
}

/// The optional field a 400/422 blames, among those that were sent.
fn rejected_field(err: &HttpError, sent: &[(Optional, bool)]) -> Option<Optional> {
    let HttpError::Status { status, body, .. } = err else {
        return None;
    };
    if !matches!(status, 400 | 422) {
        return None;
    }
    sent.iter()
        .find(|(field, was_sent)| *was_sent && field.named_in(body))
        .map(|(field, _)| *field)
}

fn reply_of(response: CompletionResponse) -> ChatReply {
    let Some(first) = response.choices.into_iter().next() else {
        return ChatReply {
            content: None,
            finish_reason: None,
            model: response.model,
            raw_choice: Some("<no choices in the response>".to_owned()),
        };
    };
    let raw_choice = first.to_string();
    match serde_json::from_value::<Choice>(first) {
        Ok(choice) => ChatReply {
            content: choice.message.and_then(|m| m.content),
            finish_reason: choice.finish_reason,
            model: response.model,
            raw_choice: Some(raw_choice),
        },
        Err(_) => ChatReply {
            content: None,
            finish_reason: None,
            model: response.model,
            raw_choice: Some(raw_choice),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, body: &str) -> HttpError {
        HttpError::Status {
            endpoint: "http://h/v1/chat/completions".to_owned(),
            status: code,
            attempts: 1,
            body: body.to_owned(),
            hint: "",
        }
    }

    #[test]
    fn a_400_naming_an_optional_field_that_was_sent_blames_it() {
        let both = [
            (Optional::TemplateKwargs, true),
            (Optional::ResponseFormat, true),
        ];
        let err = status(
            400,
            "Unrecognized request argument supplied: chat_template_kwargs",
        );
        assert_eq!(rejected_field(&err, &both), Some(Optional::TemplateKwargs));
        let err = status(
            422,
            "{\"detail\":\"response_format.type json_schema unsupported\"}",
        );
        assert_eq!(rejected_field(&err, &both), Some(Optional::ResponseFormat));
        // Not sent: not blamed.
        let none = [
            (Optional::TemplateKwargs, false),
            (Optional::ResponseFormat, false),
        ];
        assert_eq!(rejected_field(&err, &none), None);
        // Other statuses and other complaints are not about the optional fields.
        assert_eq!(
            rejected_field(&status(500, "chat_template_kwargs"), &both),
            None
        );
        assert_eq!(rejected_field(&status(400, "model not found"), &both), None);
    }

    #[test]
    fn replies_without_content_keep_the_choice() {
        let response: CompletionResponse = serde_json::from_value(serde_json::json!({
            "choices": [{"message": {"role": "assistant", "content": null,
                          "tool_calls": []}, "finish_reason": "tool_calls"}]
        }))
        .unwrap();
        let reply = reply_of(response);
        assert_eq!(reply.content, None);
        assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
        assert!(reply.raw_choice.unwrap().contains("tool_calls"));

        let empty: CompletionResponse =
            serde_json::from_value(serde_json::json!({"choices": []})).unwrap();
        assert_eq!(reply_of(empty).content, None);
    }

    #[test]
    fn request_body_has_the_expected_shape() {
        let messages = [ChatMessage::new(Role::User, "hi")];
        let format = serde_json::json!({"type": "json_schema"});
        let body = CompletionRequest {
            model: "m",
            messages: &messages,
            temperature: 0.0,
            max_tokens: 10,
            stream: false,
            response_format: Some(&format),
            chat_template_kwargs: Some(TemplateKwargs {
                enable_thinking: false,
            }),
        };
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(value["temperature"], 0.0);
        assert_eq!(value["messages"][0]["role"], "user");
        assert_eq!(value["chat_template_kwargs"]["enable_thinking"], false);
        assert_eq!(value["response_format"]["type"], "json_schema");
    }
}
