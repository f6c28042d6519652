//! Integration tests of `fuzzy-llm`: real SQLite files, real HTTP(S) servers on
//! 127.0.0.1 speaking the OpenAI chat protocol, and (in `real_model`) a real model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adjudicate;
mod e2e;
mod merges;
mod protocol;
mod real_model;
mod support;

// The TLS test server of `embed`'s tests, reused rather than copied; only part of it is
// needed here.
#[allow(dead_code)]
#[path = "../../../embed/tests/it/support.rs"]
mod servers;
