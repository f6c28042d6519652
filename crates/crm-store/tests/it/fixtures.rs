//! Small hand-written CRMs for focused tests.

use rusqlite::{Connection, params};

/// Inserts an organisation.
pub(crate) fn org(conn: &Connection, id: i64, name: &str, updated_at: &str) {
    conn.execute(
        "INSERT INTO organizations (id, name, kind, domain, created_at, updated_at) \
         VALUES (?1, ?2, 'startup', lower(replace(?2, ' ', '')) || '.com', ?3, ?3)",
        params![id, name, updated_at],
    )
    .unwrap();
}

/// Inserts a person.
pub(crate) fn person(conn: &Connection, id: i64, name: &str, org: Option<i64>, updated_at: &str) {
    let (first, last) = name.split_once(' ').unwrap_or((name, ""));
    conn.execute(
        "INSERT INTO people (id, first_name, last_name, full_name, email, organization_id, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, lower(?2) || '@example.com', ?5, ?6, ?6)",
        params![id, first, last, name, org, updated_at],
    )
    .unwrap();
}

/// Inserts an interaction with participants.
pub(crate) fn interaction(
    conn: &Connection,
    id: i64,
    occurred_at: &str,
    org: Option<i64>,
    participants: &[i64],
    body: &str,
) {
    conn.execute(
        "INSERT INTO interactions (id, kind, occurred_at, subject, body, organization_id, \
         created_at, updated_at) VALUES (?1, 'meeting', ?2, NULL, ?3, ?4, ?2, ?2)",
        params![id, occurred_at, body, org],
    )
    .unwrap();
    for p in participants {
        conn.execute(
            "INSERT INTO interaction_people (interaction_id, person_id) VALUES (?1, ?2)",
            params![id, p],
        )
        .unwrap();
    }
}

/// Inserts a deal.
pub(crate) fn deal(conn: &Connection, id: i64, name: &str, org: Option<i64>, amount: Option<f64>) {
    conn.execute(
        "INSERT INTO deals (id, organization_id, name, stage, amount_usd, created_at, updated_at) \
         VALUES (?1, ?2, ?3, 'Diligence', ?4, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
        params![id, org, name, amount],
    )
    .unwrap();
}
