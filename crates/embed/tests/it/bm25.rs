//! BM25 against vectors computed by Python fastembed itself, and properties on any input.

use embed::bm25::{murmur3_x86_32, token_id};
use embed::{Bm25Config, Bm25Encoder, SparseVector};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    text: String,
    document: SparseVector,
    query: SparseVector,
}

fn golden(name: &str) -> Vec<Golden> {
    let path = crate::support::crate_dir()
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn assert_same(text: &str, what: &str, got: &SparseVector, want: &SparseVector) {
    assert_eq!(got.indices, want.indices, "{what} ids of {text:?}");
    for (g, w) in got.values.iter().zip(&want.values) {
        assert!(
            (g - w).abs() <= 1e-6,
            "{what} values of {text:?}: {g} vs {w}"
        );
    }
}

fn check_file(name: &str, min_records: usize) {
    let encoder = Bm25Encoder::new(Bm25Config::default()).unwrap();
    let records = golden(name);
    assert!(
        records.len() >= min_records,
        "{name} has {} records",
        records.len()
    );
    for record in &records {
        assert_same(
            &record.text,
            "document",
            &encoder.document(&record.text),
            &record.document,
        );
        assert_same(
            &record.text,
            "query",
            &encoder.query(&record.text),
            &record.query,
        );
    }
}

#[test]
fn matches_the_shared_fastembed_golden_vectors() {
    check_file("bm25_golden.jsonl", 14);
}

#[test]
fn matches_fastembed_on_hostile_unicode() {
    // Greek final sigma, İ, combining marks, zero-width characters, numerals of many
    // scripts, fullwidth forms, control separators, 40/41-character tokens, and 300 seeded
    // random strings: see scripts/python/bm25_reference.py.
    check_file("bm25_unicode_golden.jsonl", 320);
}

#[test]
fn i32_min_hash_maps_like_python_abs() {
    // Python's abs() of -2^31 is 2^31; as u32 that is representable.
    assert_eq!((i32::MIN).unsigned_abs(), 2_147_483_648);
    // token_id is abs(murmur as i32) for every input.
    for s in ["", "a", "nike", "ΟΔΟΣ"] {
        let h = murmur3_x86_32(s.as_bytes(), 0) as i32;
        assert_eq!(token_id(s), h.unsigned_abs());
    }
}

fn check_vector(v: &SparseVector, query: bool) -> Result<(), TestCaseError> {
    prop_assert_eq!(v.indices.len(), v.values.len());
    prop_assert!(
        v.indices.windows(2).all(|w| w[0] < w[1]),
        "sorted and unique"
    );
    for &x in &v.values {
        prop_assert!(x.is_finite() && x > 0.0, "value {}", x);
        if query {
            prop_assert_eq!(x, 1.0);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_unicode_gives_well_formed_vectors(text in any::<String>()) {
        let encoder = Bm25Encoder::new(Bm25Config::default()).unwrap();
        let doc = encoder.document(&text);
        let query = encoder.query(&text);
        check_vector(&doc, false)?;
        check_vector(&query, true)?;
        prop_assert_eq!(&doc.indices, &query.indices);
    }

    #[test]
    fn word_heavy_unicode_gives_well_formed_vectors(
        text in "[\\p{L}\\p{M}\\p{N}_ ΣσςİßẞǅⅫ½\u{301}\u{200d}]{0,200}",
        k in 0.0f64..5.0,
        b in 0.0f64..=1.0,
        avg_len in 0.001f64..10_000.0,
    ) {
        let encoder = Bm25Encoder::new(Bm25Config { k, b, avg_len }).unwrap();
        check_vector(&encoder.document(&text), false)?;
        check_vector(&encoder.query(&text), true)?;
    }

    #[test]
    fn murmur_matches_the_murmur3_crate(bytes in proptest::collection::vec(any::<u8>(), 0..64), seed in any::<u32>()) {
        let expected = murmur3::murmur3_32(&mut std::io::Cursor::new(&bytes), seed).unwrap();
        prop_assert_eq!(murmur3_x86_32(&bytes, seed), expected);
    }
}
