//! Typed configuration of the tool router. Built by the binaries from their settings.

use serde::{Deserialize, Serialize};

use crate::error::McpError;

/// How the tools behave: the read-only switch, paging and the size of answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Remove the write tools (`add_note`, `update_person`, `update_organization`,
    /// `review_merge_candidate`, `undo_merge`) from the tool list entirely.
    pub read_only: bool,
    /// Page size when a list tool is called without `limit`.
    pub default_page_size: u32,
    /// The largest `limit` a list tool accepts.
    pub max_page_size: u32,
    /// Characters kept of a long text (a bio, a note body) in a single-row answer.
    pub max_text_chars: u32,
    /// Characters kept of a long text in each item of a list.
    pub list_text_chars: u32,
    /// Characters kept of a short field (a name, an email); longer values are clipped.
    pub max_field_chars: u32,
    /// Upper bound on the JSON size of one answer, in bytes. Long texts are cut further
    /// and lists end early (with a cursor) to stay under it. rmcp sends the structured
    /// answer and a text copy of it, so the wire size is about twice this.
    pub response_budget_bytes: u32,
    /// The index collection whose sync state `crm_stats` reports.
    pub collection: String,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            read_only: false,
            default_page_size: 20,
            max_page_size: 100,
            max_text_chars: 8_000,
            list_text_chars: 600,
            max_field_chars: 300,
            response_budget_bytes: 40_000,
            collection: "crm_chunks".to_owned(),
        }
    }
}

impl ToolsConfig {
    /// Checks that the limits can work together.
    pub fn validate(&self) -> Result<(), McpError> {
        let bad = |m: String| Err(McpError::InvalidConfig(m));
        if self.max_page_size == 0 || self.default_page_size == 0 {
            return bad("page sizes must be at least 1".into());
        }
        if self.default_page_size > self.max_page_size {
            return bad(format!(
                "default_page_size ({}) exceeds max_page_size ({})",
                self.default_page_size, self.max_page_size
            ));
        }
        if self.max_text_chars < 100 || self.list_text_chars < 50 || self.max_field_chars < 50 {
            return bad(
                "text limits must be at least 100 (single rows), 50 (lists) and 50 \
                        (fields) characters"
                    .into(),
            );
        }
        if self.response_budget_bytes < 8_000 {
            return bad(format!(
                "response_budget_bytes must be at least 8000, got {}",
                self.response_budget_bytes
            ));
        }
        if self.collection.trim().is_empty() {
            return bad("collection must not be empty".into());
        }
        Ok(())
    }
}
