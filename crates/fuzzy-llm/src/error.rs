//! The one error type of this crate.

use embed::http::HttpError;

/// Everything that can go wrong while adjudicating candidates.
///
/// A model that answers nonsense is *not* an error of this type: that is an outcome of
/// the candidate (status `error`, raw reply kept). These are failures of the run: the
/// endpoint, the database, or the configuration.
#[derive(Debug, thiserror::Error)]
pub enum FuzzyError {
    /// The configuration cannot work.
    #[error("invalid fuzzy-tier configuration: {0}")]
    InvalidConfig(String),

    /// The chat endpoint failed (after the HTTP layer's retries). The message names the
    /// endpoint, the status and what to check.
    #[error(transparent)]
    Http(#[from] HttpError),

    /// A `crm-store` read failed.
    #[error(transparent)]
    Store(#[from] crm_store::StoreError),

    /// The merge machinery of `entity-resolve` refused or failed.
    #[error(transparent)]
    Resolve(#[from] entity_resolve::ResolveError),

    /// A SQLite statement failed.
    #[error("sqlite failed while {context}: {source}")]
    Sqlite {
        /// What was being done, naming the row where there is one.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// A candidate named by the caller does not exist.
    #[error("entity candidate {0} does not exist")]
    CandidateNotFound(i64),
}

/// Maps a rusqlite error to [`FuzzyError::Sqlite`] with a context.
pub(crate) fn sql<C: Into<String>>(context: C) -> impl FnOnce(rusqlite::Error) -> FuzzyError {
    move |source| FuzzyError::Sqlite {
        context: context.into(),
        source,
    }
}
