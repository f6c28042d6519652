//! What a run's result depends on, hashed, so a run over unchanged input can stop early.
//!
//! A run's output is a function of four things: the rules of this build, the tuning that
//! changes results, the identifying columns of the live CRM rows, and the entity tables
//! (entities, links, merges and their rows, candidates). A run records the SHA-256 of the
//! four as they stand after it, in its `ingest_runs` summary (`input_fingerprint`). The
//! next run hashes the same inputs from its own snapshot; when the two agree, computing
//! again would write nothing (a run reaches a fixed point: re-running over its own
//! output changes nothing), so it stops there and says so.
//!
//! The hash after a run that wrote is read back from the database, and is recorded only
//! when no other writer decided anything in the meantime: merges, undos and candidate
//! decisions by the fuzzy tier or a person, which the run did not see, would otherwise be
//! taken as part of its own output. Any change made later, by anyone, changes the next
//! run's hash and makes it compute in full.

use crm_store::{IdentityRow, OrganizationIdentity, PersonIdentity};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use crate::ResolveError;
use crate::error::sqlite;
use crate::run::{ResolveConfig, STEP};

/// Bump when a rule, a normaliser or the candidate scoring changes what a run writes:
/// a new build must not take an old run's output as its own.
pub(crate) const RULES_VERSION: u32 = 1;

/// A streaming hash of typed values, each length- and type-prefixed so that no two
/// different sequences of values hash alike.
pub(crate) struct InputHasher(Sha256);

impl InputHasher {
    pub(crate) fn new(domain: &str) -> Self {
        let mut h = Self(Sha256::new());
        h.str(domain);
        h
    }

    pub(crate) fn int(&mut self, v: i64) {
        self.0.update([b'i']);
        self.0.update(v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(b's', v.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.str(s),
            None => self.0.update([b'n']),
        }
    }

    fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(i) => self.int(i),
            None => self.0.update([b'n']),
        }
    }

    fn bytes(&mut self, tag: u8, v: &[u8]) {
        self.0.update([tag]);
        self.0.update((v.len() as u64).to_le_bytes());
        self.0.update(v);
    }

    fn value(&mut self, v: ValueRef<'_>) {
        match v {
            ValueRef::Null => self.0.update([b'n']),
            ValueRef::Integer(i) => self.int(i),
            ValueRef::Real(f) => {
                self.0.update([b'r']);
                self.0.update(f.to_bits().to_le_bytes());
            }
            ValueRef::Text(t) => self.bytes(b's', t),
            ValueRef::Blob(b) => self.bytes(b'b', b),
        }
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Adds one lean CRM row to a hash of its table.
pub(crate) trait HashRow: IdentityRow {
    fn hash_into(&self, h: &mut InputHasher);
}

impl HashRow for PersonIdentity {
    fn hash_into(&self, h: &mut InputHasher) {
        h.int(self.id);
        h.opt_str(self.first_name.as_deref());
        h.opt_str(self.last_name.as_deref());
        h.str(&self.full_name);
        h.opt_str(self.email.as_deref());
        h.opt_str(self.phone.as_deref());
        h.opt_str(self.title.as_deref());
        h.opt_int(self.organization_id);
        h.opt_str(self.linkedin_url.as_deref());
        h.opt_str(self.location.as_deref());
    }
}

impl HashRow for OrganizationIdentity {
    fn hash_into(&self, h: &mut InputHasher) {
        h.int(self.id);
        h.str(&self.name);
        h.opt_str(self.kind.as_deref());
        h.opt_str(self.domain.as_deref());
        h.opt_str(self.website.as_deref());
        h.opt_str(self.location.as_deref());
    }
}

/// The entity tables, each read whole in storage order, every column that a run reads
/// or writes except times (a run's own timestamps differ from run to run).
const STATE_QUERIES: [(&str, &str); 5] = [
    (
        "entities",
        "SELECT entity_id, kind, deleted_at IS NULL, merged_into, display_name \
         FROM entities ORDER BY rowid",
    ),
    (
        "entity_links",
        "SELECT source_table, source_id, entity_id, rule FROM entity_links ORDER BY rowid",
    ),
    (
        "entity_merges",
        "SELECT id, kind, winner, loser, decided_by, confidence, undone_at IS NULL \
         FROM entity_merges ORDER BY id",
    ),
    (
        "entity_merge_rows",
        "SELECT merge_id, side, source_table, source_id FROM entity_merge_rows \
         ORDER BY merge_id, side, source_table, source_id",
    ),
    (
        "entity_candidates",
        "SELECT id, kind, entity_a, entity_b, status, score, reasons, decided_by \
         FROM entity_candidates ORDER BY id",
    ),
];

/// The decisions only others make: merges and undos not made by the rules, undos of
/// rule merges, and candidates decided by anyone but the rules.
const FOREIGN_DECISIONS: [(&str, &str); 2] = [
    (
        "entity_merges",
        "SELECT id, decided_by, undone_at FROM entity_merges \
         WHERE decided_by IS NOT 'rule' OR undone_at IS NOT NULL ORDER BY id",
    ),
    (
        "entity_candidates",
        "SELECT id, status, decided_by FROM entity_candidates \
         WHERE status IS NOT 'pending' AND decided_by IS NOT 'rule' ORDER BY id",
    ),
];

fn hash_queries(
    conn: &Connection,
    domain: &str,
    queries: &[(&str, &str)],
    ctx: &'static str,
) -> Result<String, ResolveError> {
    let mut h = InputHasher::new(domain);
    for (table, sql) in queries {
        h.str(table);
        let mut stmt = conn.prepare(sql).map_err(sqlite(ctx))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).map_err(sqlite(ctx))?;
        while let Some(row) = rows.next().map_err(sqlite(ctx))? {
            for i in 0..columns {
                h.value(row.get_ref(i).map_err(sqlite(ctx))?);
            }
        }
    }
    Ok(h.finish())
}

/// The hash of the entity tables.
pub(crate) fn state_hash(conn: &Connection) -> Result<String, ResolveError> {
    hash_queries(conn, "state", &STATE_QUERIES, "hashing the entity tables")
}

/// The hash of the decisions made by others (see [`FOREIGN_DECISIONS`]).
pub(crate) fn foreign_decisions(conn: &Connection) -> Result<String, ResolveError> {
    hash_queries(
        conn,
        "decisions",
        &FOREIGN_DECISIONS,
        "reading decisions made by others",
    )
}

/// The fingerprint of a run's whole input.
pub(crate) fn combine(
    config: &ResolveConfig,
    organizations: &str,
    people: &str,
    state: &str,
) -> String {
    let mut h = InputHasher::new("crm-substrate entity-resolve input");
    h.str(env!("CARGO_PKG_VERSION"));
    h.int(i64::from(RULES_VERSION));
    h.str(config.default_region.code());
    h.int(config.max_block_size as i64);
    h.str(organizations);
    h.str(people);
    h.str(state);
    h.finish()
}

/// What the last successful run recorded: its fingerprint, its run id and its summary.
pub(crate) struct Recorded {
    pub(crate) run_id: i64,
    pub(crate) fingerprint: String,
    pub(crate) summary: serde_json::Value,
}

/// The fingerprint recorded by the last successful run, if it recorded one.
pub(crate) fn last_recorded(conn: &Connection) -> Result<Option<Recorded>, ResolveError> {
    let ctx = "reading the last resolve run";
    let mut stmt = conn
        .prepare(
            "SELECT id, counts_json FROM ingest_runs WHERE step = ?1 AND status = 'ok' \
             ORDER BY id DESC LIMIT 1",
        )
        .map_err(sqlite(ctx))?;
    let mut rows = stmt.query([STEP]).map_err(sqlite(ctx))?;
    let Some(row) = rows.next().map_err(sqlite(ctx))? else {
        return Ok(None);
    };
    let run_id: i64 = row.get(0).map_err(sqlite(ctx))?;
    let counts: Option<String> = row.get(1).map_err(sqlite(ctx))?;
    // A summary this build cannot read records nothing usable: compute in full.
    let Some(summary) = counts.and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
    else {
        return Ok(None);
    };
    let Some(fingerprint) = summary
        .get("input_fingerprint")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    Ok(Some(Recorded {
        run_id,
        fingerprint,
        summary,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_framed() {
        let hash = |f: &dyn Fn(&mut InputHasher)| {
            let mut h = InputHasher::new("t");
            f(&mut h);
            h.finish()
        };
        // Concatenation does not collide.
        assert_ne!(
            hash(&|h| {
                h.str("ab");
                h.str("c");
            }),
            hash(&|h| {
                h.str("a");
                h.str("bc");
            })
        );
        // None, the empty string and the text "0" or the integer 0 all differ.
        let none = hash(&|h| h.opt_str(None));
        let empty = hash(&|h| h.opt_str(Some("")));
        let zero_text = hash(&|h| h.str("0"));
        let zero = hash(&|h| h.int(0));
        let all = [&none, &empty, &zero_text, &zero];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(none, hash(&|h| h.opt_str(None)), "deterministic");
    }

    #[test]
    fn the_fingerprint_covers_the_tuning_that_changes_results() {
        let base = ResolveConfig::default();
        let fp = |c: &ResolveConfig| combine(c, "o", "p", "s");
        let other_region = ResolveConfig {
            default_region: "GB".parse().unwrap(),
            ..base.clone()
        };
        let other_cap = ResolveConfig {
            max_block_size: 7,
            ..base.clone()
        };
        let other_batch = ResolveConfig {
            write_batch: 3,
            read_page: 5,
            ..base.clone()
        };
        assert_ne!(fp(&base), fp(&other_region));
        assert_ne!(fp(&base), fp(&other_cap));
        assert_eq!(fp(&base), fp(&other_batch), "batch sizes change no result");
        assert_ne!(combine(&base, "o", "p", "s"), combine(&base, "o", "p", "t"));
        assert_ne!(combine(&base, "o", "p", "s"), combine(&base, "p", "o", "s"));
    }
}
