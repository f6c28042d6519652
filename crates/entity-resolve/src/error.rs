//! The crate's error type.

use crm_store::StoreError;

/// Everything that can go wrong in entity resolution and merges.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A phone region code that libphonenumber does not know.
    #[error(
        "unknown phone region {0:?}: expected an ISO 3166-1 alpha-2 code such as \"US\" or \"GB\""
    )]
    UnknownRegion(String),
    /// A configuration value out of range.
    #[error("invalid resolver configuration: {0}")]
    InvalidConfig(String),
    /// Text that should be an entity id (`person:17`) is not one.
    #[error("not an entity id: {0:?} (expected `person:<n>` or `organization:<n>`)")]
    BadEntityId(String),
    /// A SQLite statement of this crate failed.
    #[error("sqlite failed while {context}: {source}")]
    Sqlite {
        /// What the resolver was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A `crm-store` call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another resolver run holds the lease.
    #[error(
        "another entity-resolution run holds the lease (holder {holder}, pid {pid} on {hostname}, until {expires_at}); \
         wait for it to finish, or for the lease to expire"
    )]
    Busy {
        /// The holder's run id.
        holder: String,
        /// The holder's process id.
        pid: u32,
        /// The holder's host.
        hostname: String,
        /// When the lease lapses.
        expires_at: String,
    },
    /// The lease was taken over during the run (it ran past the lease's lifetime).
    #[error(
        "lost the entity-resolution lease during the run; the writes so far are consistent, re-run to finish"
    )]
    LeaseLost,
    /// No candidate with this id.
    #[error("candidate {0} does not exist")]
    CandidateNotFound(i64),
    /// The candidate was already decided.
    #[error(
        "candidate {id} is already {status}; only a pending or errored candidate can be decided"
    )]
    CandidateDecided {
        /// The candidate.
        id: i64,
        /// Its status.
        status: String,
    },
    /// No merge with this id.
    #[error("merge {0} does not exist")]
    MergeNotFound(i64),
    /// The merge was already undone.
    #[error("merge {0} was already undone")]
    MergeAlreadyUndone(i64),
    /// An entity the operation needs is missing or not live.
    #[error("entity {entity} is {state}; {hint}")]
    EntityNotLive {
        /// The entity.
        entity: String,
        /// What it is (`missing`, `retired`, `merged into person:3`).
        state: String,
        /// What to do.
        hint: &'static str,
    },
    /// The two entities of a merge are of different kinds, or the same entity.
    #[error("cannot merge {loser} into {winner}: {reason}")]
    InvalidMerge {
        /// The winner.
        winner: String,
        /// The loser.
        loser: String,
        /// Why not.
        reason: String,
    },
    /// Hard evidence says the two entities differ; only a person may override it.
    #[error(
        "cannot merge {loser} into {winner}: conflicting hard evidence ({evidence}); a person (`human:<who>`) may still decide it"
    )]
    ConflictingEvidence {
        /// The winner.
        winner: String,
        /// The loser.
        loser: String,
        /// What conflicts.
        evidence: String,
    },
    /// A decision-maker label that is not `rule`, `llm:<model>` or `human:<who>`.
    #[error("decided_by must be `rule`, `llm:<model>` or `human:<who>`, got {0:?}")]
    BadDecider(String),
}

/// Maps a rusqlite error with a context.
/// Maps a rusqlite error with a context; the context becomes a `String` only on error.
pub(crate) fn sqlite<C: Into<String>>(context: C) -> impl FnOnce(rusqlite::Error) -> ResolveError {
    move |source| ResolveError::Sqlite {
        context: context.into(),
        source,
    }
}
