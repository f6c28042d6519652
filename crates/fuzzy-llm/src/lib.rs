//! LLM adjudication of flagged entity candidates.
//!
//! Will hold the OpenAI-compatible chat client, the adjudication prompt and strict
//! validation of the model's JSON answer, and the safety rules (confidence threshold,
//! hard-evidence veto, merges-per-run cap) around durable merges.
