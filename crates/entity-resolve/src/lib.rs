//! Deterministic entity resolution.
//!
//! Will hold the normalisers (names, emails, phones, LinkedIn URLs, domains, legal
//! names), the precision-first linking rules, blocking and candidate scoring, the
//! union-find clustering that assigns stable canonical ids, and the merge machinery
//! that every re-run respects.
