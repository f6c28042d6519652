//! CRM timestamps and the sync watermark.
//!
//! The CRM writes timestamps as ISO-8601 UTC text (`2026-06-05T13:55:12.123Z`), but rows
//! written by SQLite's `CURRENT_TIMESTAMP` look like `2026-06-05 13:55:12`. The two do not
//! sort together as raw text (`' ' < 'T'`), so every read normalises them to one canonical
//! form, `YYYY-MM-DDTHH:MM:SS.sssZ`, with millisecond precision.
//!
//! Reads let SQLite do the normalising, through [`NORMALISED_UPDATED_AT`]-style expressions
//! (the same expression backs the keyset indexes), so Rust and SQLite can never disagree
//! about the order of two rows. [`Timestamp::parse`] accepts the same ISO forms for text
//! that does not come from a CRM row (watermarks, flags, tests).
//!
//! **Unparsable timestamps.** A CRM row whose timestamp is NULL, empty or not a date is
//! kept, never dropped: its timestamp reads as the Unix epoch
//! (`1970-01-01T00:00:00.000Z`) and a `warn` event names the table, row and column. The
//! row therefore sorts first in keyset order and is still synced.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{StoreError, excerpt};

/// The canonical text of the Unix epoch, used for unparsable CRM timestamps.
pub const EPOCH_TEXT: &str = "1970-01-01T00:00:00.000Z";

/// Builds the SQL expression that normalises a timestamp column to canonical text.
///
/// The expression is deterministic, so SQLite accepts it in an index; the keyset indexes
/// are built on exactly this text and the keyset queries use exactly this text, which is
/// what lets the planner use them.
pub(crate) fn normalised_sql(column: &str) -> String {
    format!("COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', {column}), '{EPOCH_TEXT}')")
}

/// `normalised_sql("updated_at")`, spelled out because index DDL needs a literal.
pub const NORMALISED_UPDATED_AT: &str =
    "COALESCE(strftime('%Y-%m-%dT%H:%M:%fZ', updated_at), '1970-01-01T00:00:00.000Z')";

const MILLIS_PER_DAY: i64 = 86_400_000;
/// 0000-01-01T00:00:00Z in milliseconds since the Unix epoch.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z in milliseconds since the Unix epoch.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// A UTC instant with millisecond precision, displayed as `YYYY-MM-DDTHH:MM:SS.sssZ`.
///
/// Ordering is chronological, and agrees with the lexicographic order of the canonical text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

impl Timestamp {
    /// The Unix epoch, which unparsable CRM timestamps read as.
    pub const EPOCH: Self = Self { millis: 0 };
    /// The earliest representable instant, 0000-01-01T00:00:00.000Z.
    pub const MIN: Self = Self { millis: MIN_MILLIS };
    /// The latest representable instant, 9999-12-31T23:59:59.999Z.
    pub const MAX: Self = Self { millis: MAX_MILLIS };

    /// The instant `millis` milliseconds after the Unix epoch, if within years 0000–9999.
    pub fn from_millis(millis: i64) -> Option<Self> {
        (MIN_MILLIS..=MAX_MILLIS)
            .contains(&millis)
            .then_some(Self { millis })
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.millis
    }

    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        let millis = chrono::Utc::now().timestamp_millis();
        Self {
            millis: millis.clamp(MIN_MILLIS, MAX_MILLIS),
        }
    }

    /// Parses an ISO-8601 timestamp.
    ///
    /// Accepted: `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM`,
    /// optionally `:SS`, optionally a fraction of any length (rounded to milliseconds as SQLite rounds
    /// them, never into the next second),
    /// optionally `Z`/`z` or an offset `±HH:MM` (converted to UTC), optionally trailing
    /// spaces. Text without a zone is UTC. These are the forms SQLite's date functions
    /// accept, so a value parsed here and the same value normalised by SQLite agree — up
    /// to one millisecond for a fraction that lies exactly on a half millisecond, where
    /// SQLite itself rounds differently with and without a zone offset. Row order never
    /// depends on this: reads always use SQLite's normalised text.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        parse_iso(text).ok_or_else(|| StoreError::Timestamp {
            text: excerpt(text),
        })
    }

    /// Reads a timestamp that SQLite has already normalised, applying the crate's rule
    /// for bad CRM timestamps: NULL, empty or unparsable text reads as the epoch, and a
    /// warning names the row.
    ///
    /// `normalised` is the output of the normalising SQL expression; `raw` is the column's
    /// original text, used only to tell "missing" from "unparsable" in the log.
    pub(crate) fn from_crm(
        normalised: Option<&str>,
        raw: Option<&str>,
        table: &str,
        id: i64,
        column: &str,
    ) -> Self {
        let parsed = normalised.and_then(parse_iso);
        match parsed {
            Some(ts) if ts != Self::EPOCH => ts,
            _ => {
                let raw_trimmed = raw.map(str::trim).filter(|r| !r.is_empty());
                match raw_trimmed {
                    // A genuine epoch value (rare) is not an error.
                    Some(r) if parse_iso(r) == Some(Self::EPOCH) => Self::EPOCH,
                    Some(r) => {
                        tracing::warn!(
                            table,
                            id,
                            column,
                            value = %excerpt(r),
                            "unparsable crm timestamp read as the epoch"
                        );
                        Self::EPOCH
                    }
                    None => {
                        tracing::debug!(
                            table,
                            id,
                            column,
                            "missing crm timestamp read as the epoch"
                        );
                        Self::EPOCH
                    }
                }
            }
        }
    }

    /// This instant moved back by `by` (clamped at [`Timestamp::MIN`]).
    pub fn saturating_sub(self, by: Duration) -> Self {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        Self {
            millis: self.millis.saturating_sub(ms).max(MIN_MILLIS),
        }
    }

    /// This instant moved forward by `by` (clamped at [`Timestamp::MAX`]).
    pub fn saturating_add(self, by: Duration) -> Self {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        Self {
            millis: self.millis.saturating_add(ms).min(MAX_MILLIS),
        }
    }

    /// The canonical text, `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub fn to_canonical(self) -> String {
        self.to_string()
    }

    /// The date part, `YYYY-MM-DD`.
    pub fn date_text(self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.millis.div_euclid(MILLIS_PER_DAY);
        let ms_of_day = self.millis.rem_euclid(MILLIS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let h = ms_of_day / 3_600_000;
        let min = ms_of_day / 60_000 % 60;
        let s = ms_of_day / 1000 % 60;
        let ms = ms_of_day % 1000;
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A keyset position: every row with `(updated_at, id)` strictly greater comes after it.
///
/// Incremental sync stores one per collection and source table. Because CRM timestamps
/// may have one-second resolution (`CURRENT_TIMESTAMP`) and clocks of concurrent writers
/// are not perfectly ordered, callers read with an overlap window: [`Watermark::rewind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark {
    /// The normalised `updated_at` of the last row seen.
    pub updated_at: Timestamp,
    /// The id of the last row seen (the tie-breaker among equal timestamps).
    pub id: i64,
}

impl Watermark {
    /// A watermark at a row.
    pub fn new(updated_at: Timestamp, id: i64) -> Self {
        Self { updated_at, id }
    }

    /// The watermark moved back by `overlap`: every row updated within `overlap` before
    /// this one (at any id) is read again. Re-reading is harmless because unchanged rows
    /// are skipped by content hash.
    pub fn rewind(self, overlap: Duration) -> Self {
        Self {
            updated_at: self.updated_at.saturating_sub(overlap),
            id: i64::MIN,
        }
    }
}

/// Parses the ISO forms described on [`Timestamp::parse`]; `None` if not one of them.
fn parse_iso(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let mut p = Cursor { b, i: 0 };
    let year = p.digits(4)?;
    p.expect(b'-')?;
    let month = p.digits(2)?;
    p.expect(b'-')?;
    let day = p.digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms_of_day: i64 = 0;
    let mut offset_ms: i64 = 0;
    if matches!(p.peek(), Some(b'T' | b' ')) && p.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
        p.i += 1;
        let h = p.digits(2)?;
        p.expect(b':')?;
        let mi = p.digits(2)?;
        let mut sec_ms = 0;
        if p.peek() == Some(b':') {
            p.i += 1;
            let s = p.digits(2)?;
            if s > 59 {
                return None;
            }
            let mut fraction = 0.0;
            if p.peek() == Some(b'.') {
                p.i += 1;
                fraction = p.fraction()?;
            }
            // Exactly SQLite's arithmetic (`parseHhMmSs`, `computeJD`): round to the
            // millisecond, but a fraction above .999 stays in its second.
            sec_ms = ((s as f64 + fraction) * 1000.0 + 0.5) as i64;
        }
        if h > 23 || mi > 59 {
            return None;
        }
        ms_of_day = h * 3_600_000 + mi * 60_000 + sec_ms;
        p.skip_spaces();
        match p.peek() {
            Some(b'Z' | b'z') => p.i += 1,
            Some(sign @ (b'+' | b'-')) => {
                p.i += 1;
                let oh = p.digits(2)?;
                p.expect(b':')?;
                let om = p.digits(2)?;
                if oh > 14 || om > 59 {
                    return None;
                }
                let off = oh * 3_600_000 + om * 60_000;
                offset_ms = if sign == b'+' { off } else { -off };
            }
            _ => {}
        }
    }
    p.skip_spaces();
    if p.i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Timestamp::from_millis(days * MILLIS_PER_DAY + ms_of_day - offset_ms)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        Some(v)
    }
    /// Reads the digits of a fraction of a second as SQLite does: as a double, capped at
    /// 0.999.
    fn fraction(&mut self) -> Option<f64> {
        let start = self.i;
        let mut value = 0.0f64;
        let mut scale = 1.0f64;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            value = value * 10.0 + f64::from(c - b'0');
            scale *= 10.0;
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        let fraction = value / scale;
        Some(if fraction.is_nan() {
            0.0
        } else {
            fraction.min(0.999)
        })
    }
    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_round_trip() {
        let t = Timestamp::parse("2026-06-05T13:55:12.123Z").unwrap();
        assert_eq!(t.to_string(), "2026-06-05T13:55:12.123Z");
        assert_eq!(Timestamp::EPOCH.to_string(), EPOCH_TEXT);
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn accepted_variants() {
        let cases = [
            ("2026-06-05 13:55:12", "2026-06-05T13:55:12.000Z"),
            ("2026-06-05T13:55:12Z", "2026-06-05T13:55:12.000Z"),
            ("2026-06-05T13:55", "2026-06-05T13:55:00.000Z"),
            ("2026-06-05", "2026-06-05T00:00:00.000Z"),
            ("2026-06-05T13:55:12.5", "2026-06-05T13:55:12.500Z"),
            ("2026-06-05T13:55:12.1234567Z", "2026-06-05T13:55:12.123Z"),
            ("2026-06-05T13:55:12.9996Z", "2026-06-05T13:55:12.999Z"),
            ("2026-06-05T13:55:12.1236Z", "2026-06-05T13:55:12.124Z"),
            (
                "2026-06-05T13:55:59.99999+05:45",
                "2026-06-05T08:10:59.999Z",
            ),
            ("2026-06-05T13:55:12+02:00", "2026-06-05T11:55:12.000Z"),
            ("2026-06-05T23:30:00-01:00", "2026-06-06T00:30:00.000Z"),
            ("2026-06-05 13:55:12 ", "2026-06-05T13:55:12.000Z"),
            ("2024-02-29T00:00:00.000Z", "2024-02-29T00:00:00.000Z"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Timestamp::parse(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn rejected_text() {
        for bad in [
            "",
            "garbage",
            "2026-13-01",
            "2023-02-29",
            "2026-06-05T25:00",
            "2026-06-05T13:55:12.Z",
            " 2026-06-05",
            "2026/06/05",
            "2026-06-05X",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn civil_conversion_is_exact_over_a_wide_range() {
        for days in (-800_000..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rewind_resets_the_id() {
        let w = Watermark::new(Timestamp::parse("2026-06-05T13:55:12.123Z").unwrap(), 42);
        let r = w.rewind(Duration::from_secs(5));
        assert_eq!(r.updated_at.to_string(), "2026-06-05T13:55:07.123Z");
        assert_eq!(r.id, i64::MIN);
        assert!(r < w);
    }
}
