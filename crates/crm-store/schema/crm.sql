-- The CRM's own tables, exactly as the source contract (DESIGN §2) describes them.
--
-- The substrate never alters these tables' rows (except through the MCP server's logged
-- write tools). This file exists so that tests and `crm-demo` can create a CRM from
-- nothing; a real CRM may have more tables and columns, which the contract check allows.
-- Timestamps are ISO-8601 UTC text (`2026-06-05T13:55:12.123Z`); rows written by SQLite's
-- CURRENT_TIMESTAMP (`2026-06-05 13:55:12`) are normalised on read.

CREATE TABLE IF NOT EXISTS organizations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT,
    domain      TEXT,
    website     TEXT,
    description TEXT,
    location    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);

CREATE TABLE IF NOT EXISTS people (
    id              INTEGER PRIMARY KEY,
    first_name      TEXT,
    last_name       TEXT,
    full_name       TEXT NOT NULL,
    email           TEXT,
    phone           TEXT,
    title           TEXT,
    organization_id INTEGER REFERENCES organizations(id),
    linkedin_url    TEXT,
    location        TEXT,
    bio             TEXT,
    created_at      TEXT,
    updated_at      TEXT,
    deleted_at      TEXT
);

CREATE TABLE IF NOT EXISTS interactions (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL, -- meeting | call | email | note
    occurred_at     TEXT NOT NULL,
    subject         TEXT,
    body            TEXT,
    organization_id INTEGER REFERENCES organizations(id),
    created_by      TEXT,
    created_at      TEXT,
    updated_at      TEXT,
    deleted_at      TEXT
);

CREATE TABLE IF NOT EXISTS interaction_people (
    interaction_id INTEGER NOT NULL,
    person_id      INTEGER NOT NULL,
    PRIMARY KEY (interaction_id, person_id)
);

CREATE TABLE IF NOT EXISTS deals (
    id              INTEGER PRIMARY KEY,
    organization_id INTEGER,
    name            TEXT NOT NULL,
    stage           TEXT,
    amount_usd      REAL,
    notes           TEXT,
    created_at      TEXT,
    updated_at      TEXT,
    deleted_at      TEXT
);
