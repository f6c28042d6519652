//! Phone numbers, through the `phonenumber` crate (libphonenumber's metadata).

use std::fmt;
use std::str::FromStr;

use phonenumber::country;

use super::text::truncate_chars;

/// Longest raw phone field parsed; longer input is not a phone number.
const MAX_PHONE_BYTES: usize = 64;

/// The region used for numbers written without a country code (`"US"`, `"GB"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRegion(country::Id);

impl PhoneRegion {
    /// The region's ISO 3166-1 alpha-2 code.
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }
}

impl Default for PhoneRegion {
    fn default() -> Self {
        Self(country::Id::US)
    }
}

impl FromStr for PhoneRegion {
    type Err = crate::ResolveError;

    /// Parses an ISO 3166-1 alpha-2 code, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        country::Id::from_str(&upper)
            .map(Self)
            .map_err(|_| crate::ResolveError::UnknownRegion(s.to_owned()))
    }
}

impl serde::Serialize for PhoneRegion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for PhoneRegion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PhoneRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A phone number in E.164 form, with its extension kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    /// `+<country code><national number>`, e.g. `+14155550134`.
    pub e164: String,
    /// Extension digits, if one was written (`x204`, `ext. 204`).
    pub extension: Option<String>,
}

impl Phone {
    /// Parses a raw phone field. Numbers without a `+` country code are read in
    /// `default_region`. Returns `None` unless libphonenumber's metadata says the
    /// number is valid: a field that does not parse yields no key, never a garbage one.
    ///
    /// ```
    /// use entity_resolve::normalize::{Phone, PhoneRegion};
    /// let us: PhoneRegion = "US".parse().unwrap();
    /// let p = Phone::parse("(415) 555-0134 ext. 12", us).unwrap();
    /// assert_eq!(p.e164, "+14155550134");
    /// assert_eq!(p.extension.as_deref(), Some("12"));
    /// assert!(Phone::parse("n/a", us).is_none());
    /// ```
    pub fn parse(raw: &str, default_region: PhoneRegion) -> Option<Self> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_PHONE_BYTES {
            return None;
        }
        let raw = truncate_chars(raw, MAX_PHONE_BYTES);
        // A cheap guard before the parser: a phone has 6 to 20 digits.
        let digits = raw.chars().filter(char::is_ascii_digit).count();
        if !(6..=20).contains(&digits) {
            return None;
        }
        // `00` is the international prefix almost everywhere (not in North America,
        // where `011` is): a CRM's `0044 20 ...` or `001 415 ...` means `+44`/`+1`.
        // `+49 (0)151 ...`: the bracketed trunk zero is dropped when dialling from abroad.
        let without_trunk;
        let raw = if raw.contains("(0)") {
            without_trunk = raw.replace("(0)", "");
            without_trunk.as_str()
        } else {
            raw
        };
        let international;
        let raw = match raw.strip_prefix("00") {
            Some(rest) if !rest.starts_with('0') => {
                international = format!("+{rest}");
                international.as_str()
            }
            _ => raw,
        };
        // A number with its country code is parsed without a region: given one, the
        // parser applies that region's national prefix to a foreign number (`+49 151...`
        // read in the US loses the `1` of `151`).
        let has_country_code =
            raw.starts_with('+') || raw.to_ascii_lowercase().starts_with("tel:+");
        let region = (!has_country_code).then_some(default_region.0);
        let parsed = phonenumber::parse(region, raw).ok()?;
        if !parsed.is_valid() {
            return None;
        }
        let code = parsed.code().value();
        if code == 0 {
            return None;
        }
        let national = parsed.national().to_string();
        let extension = parsed
            .extension()
            .map(ToString::to_string)
            .filter(|e| !e.is_empty());
        Some(Self {
            e164: format!("+{code}{national}"),
            extension,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> PhoneRegion {
        "us".parse().unwrap()
    }

    fn e164(s: &str, r: PhoneRegion) -> Option<String> {
        Phone::parse(s, r).map(|p| p.e164)
    }

    #[test]
    fn formats_agree() {
        let want = Some("+14155550134".to_owned());
        for s in [
            "(415) 555-0134",
            "415-555-0134",
            "415.555.0134",
            "4155550134",
            "+1 415 555 0134",
            "+1-415-555-0134",
            "011 1 415 555 0134",
            "001 415 555 0134",
            "001-415-555-0134",
            "1 (415) 555-0134",
            "  +1 (415) 555-0134  ",
            "tel:+1-415-555-0134",
        ] {
            assert_eq!(e164(s, us()), want, "{s:?}");
        }
    }

    #[test]
    fn default_region_applies_only_without_country_code() {
        let gb: PhoneRegion = "GB".parse().unwrap();
        assert_eq!(e164("020 7946 0018", gb), Some("+442079460018".into()));
        assert_eq!(e164("+44 20 7946 0018", us()), Some("+442079460018".into()));
        assert_eq!(e164("+1 415 555 0134", gb), Some("+14155550134".into()));
    }

    #[test]
    fn foreign_numbers_keep_their_digits() {
        // The same German mobile in every shape, read with a US default region.
        for s in [
            "+4915124039451",
            "+49 151 2403 9451",
            "+49-151-2403-9451",
            "0049 151 2403 9451",
            "+49 (0)151 2403 9451",
        ] {
            assert_eq!(e164(s, us()), Some("+4915124039451".into()), "{s:?}");
        }
        let de: PhoneRegion = "DE".parse().unwrap();
        assert_eq!(e164("0151 2403 9451", de), Some("+4915124039451".into()));
    }

    #[test]
    fn double_zero_means_international() {
        assert_eq!(
            e164("0044 20 7946 0018", us()),
            Some("+442079460018".into())
        );
        assert_eq!(
            e164("0049 151 2403 9451", us()),
            Some("+4915124039451".into())
        );
        assert_eq!(
            e164("+49 (0)151 2403 9451", us()),
            Some("+4915124039451".into())
        );
        assert_eq!(
            e164("+44 (0)20 7946 0018", us()),
            Some("+442079460018".into())
        );
        assert_eq!(e164("007 916 270 4420", us()), Some("+79162704420".into()));
        // Three zeros are no country code.
        assert_eq!(e164("000 415 555 0134", us()), None);
    }

    #[test]
    fn leading_zero_national_numbers() {
        // Italian numbers keep their leading zero in E.164.
        assert_eq!(e164("+39 06 6982 1234", us()), Some("+390669821234".into()));
    }

    #[test]
    fn extensions_kept_apart() {
        for s in [
            "415-555-0134 x204",
            "415-555-0134 ext. 204",
            "415-555-0134 extension 204",
            "tel:+1-415-555-0134;ext=204",
        ] {
            let p = Phone::parse(s, us()).unwrap_or_else(|| panic!("{s:?} should parse"));
            assert_eq!(p.e164, "+14155550134", "{s:?}");
            assert_eq!(p.extension.as_deref(), Some("204"), "{s:?}");
        }
        assert_eq!(Phone::parse("415-555-0134", us()).unwrap().extension, None);
    }

    #[test]
    fn garbage_yields_no_key() {
        for s in [
            "",
            "   ",
            "n/a",
            "none",
            "123",
            "555-0134",
            "000-000-0000",
            "+1 000 000 0000",
            "12345678901234567890123",
            "call me maybe",
            "😀😀😀",
            "+999 123 456 789",
            "\u{0}\u{0}415\u{0}555\u{0}0134",
        ] {
            assert_eq!(e164(s, us()), None, "{s:?} should yield no key");
        }
        assert_eq!(e164(&"4".repeat(10_000), us()), None);
    }

    #[test]
    fn regions_parse() {
        assert_eq!("gb".parse::<PhoneRegion>().unwrap().code(), "GB");
        assert!("XX".parse::<PhoneRegion>().is_err());
        assert!("".parse::<PhoneRegion>().is_err());
        assert_eq!(PhoneRegion::default().to_string(), "US");
    }
}
