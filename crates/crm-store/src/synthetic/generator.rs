//! Row generation: each row is a pure function of `(seed, plan, id)`.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::data::{
    CULTURES, Country, DEAL_STAGES, FIRM_TEAM, GLOBAL_MAIL, LOCATIONS, ODD_UNICODE, ORG_KIND_WORDS,
    ORG_NOUNS, ORG_ROOTS, ROUNDS, SUFFIX_VARIANTS, US_AREA_CODES, US_LOCATIONS, legal_suffixes,
    titles, tlds,
};
use super::plan::{
    OrgRole, PersonRole, Plan, S_DEAL, S_INTERACTION, S_ORG_ROW, S_PERSON_ROW, mix, org_flags,
    person_flags, pick, skewed, splitmix,
};
use super::text;
use super::{OrgDupKind, PersonDupKind, SyntheticConfig, TrapKind};
use crate::timestamp::Timestamp;

/// 2026-06-01T00:00:00Z: "now" for the synthetic CRM, fixed so output is reproducible.
const BASE_MS: i64 = 1_780_272_000_000;
const DAY_MS: i64 = 86_400_000;
const YEAR_MS: i64 = 365 * DAY_MS;

fn rng_for(seed: u64, stream: u64, id: u32) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed, stream, u64::from(id)))
}

// ---------------------------------------------------------------------------------------
// formats

/// How a row writes its timestamps.
#[derive(Clone, Copy)]
enum TsStyle {
    /// `2026-06-05T13:55:12.123Z`
    IsoMillis,
    /// `2026-06-05T13:55:12Z`
    IsoSeconds,
    /// `2026-06-05 13:55:12` (SQLite's CURRENT_TIMESTAMP)
    Sqlite,
}

fn ts_style(messy: bool, rng: &mut ChaCha8Rng) -> TsStyle {
    if !messy {
        return TsStyle::IsoMillis;
    }
    match rng.random_range(0..4) {
        0 | 1 => TsStyle::Sqlite,
        2 => TsStyle::IsoSeconds,
        _ => TsStyle::IsoMillis,
    }
}

fn fmt_ts(ms: i64, style: TsStyle) -> String {
    let t = Timestamp::from_millis(ms).unwrap_or(Timestamp::EPOCH);
    let mut s = t.to_canonical();
    match style {
        TsStyle::IsoMillis => s,
        TsStyle::IsoSeconds => {
            s.truncate(19);
            s.push('Z');
            s
        }
        TsStyle::Sqlite => {
            s.truncate(19);
            s.replace_range(10..11, " ");
            s
        }
    }
}

/// `(created, updated)`: created in the five years before the base time, updated later.
fn created_updated(rng: &mut ChaCha8Rng) -> (i64, i64) {
    let created = BASE_MS - rng.random_range(DAY_MS..5 * YEAR_MS);
    let r: f64 = rng.random();
    let updated = created + ((BASE_MS - created) as f64 * r * r * r) as i64;
    (created, updated)
}

/// Lowercase ASCII with accents folded and everything but letters and digits dropped.
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mapped: &str = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'Á' | 'À' | 'Ä' | 'Å' => "a",
            'é' | 'è' | 'ê' | 'ë' | 'ě' | 'É' | 'È' => "e",
            'í' | 'ì' | 'î' | 'ï' | 'Í' => "i",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'Ó' | 'Ö' => "o",
            'ú' | 'ù' | 'û' | 'ü' | 'Ú' | 'Ü' => "u",
            'ñ' | 'ń' | 'Ñ' => "n",
            'ç' | 'ć' | 'č' | 'Č' => "c",
            'ł' | 'Ł' => "l",
            'ś' | 'š' | 'Š' | 'Ś' => "s",
            'ż' | 'ź' | 'ž' | 'Ž' => "z",
            'ř' => "r",
            'đ' | 'Đ' => "d",
            'ß' => "ss",
            _ => "",
        };
        if !mapped.is_empty() {
            out.push_str(mapped);
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A bijection on 24 bits (for ids below 2^24), so derived handles are unique per id.
fn scramble24(id: u32, seed: u64) -> u32 {
    if id >= 1 << 24 {
        return id;
    }
    let x = id.wrapping_mul(0x009E_3779) & 0x00FF_FFFF;
    (x ^ (seed as u32 & 0x00FF_FFFF)) & 0x00FF_FFFF
}

/// A bijection on 32 bits.
fn scramble32(id: u32, seed: u64) -> u32 {
    id.wrapping_mul(0x9E37_79B1) ^ (seed >> 32) as u32
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Phone {
    pub(crate) country: Country,
    /// National significant number.
    pub(crate) nsn: String,
}

fn calling_code(c: Country) -> &'static str {
    match c {
        Country::Us => "1",
        Country::Uk => "44",
        Country::Mexico => "52",
        Country::Spain => "34",
        Country::China => "86",
        Country::India => "91",
        Country::Uae => "971",
        Country::Russia => "7",
        Country::Poland => "48",
        Country::Nigeria => "234",
        Country::Japan => "81",
        Country::Germany => "49",
        Country::France => "33",
        Country::Korea => "82",
    }
}

/// A phone number from a unique 7-digit value `m` (< 10^7, unique per person or office).
fn phone_from(country: Country, m: u32, rng: &mut ChaCha8Rng) -> Phone {
    let seven = format!("{m:07}");
    let nsn = match country {
        Country::Us => {
            let area = US_AREA_CODES.choose(rng).copied().unwrap_or(415);
            // Exchange 200-999 keeps the number valid under the North American plan.
            format!("{area}{:03}{:04}", 200 + m / 10_000 % 800, m % 10_000)
        }
        Country::Uk => format!("207{seven}"),
        Country::Mexico => format!("551{seven}"),
        Country::Spain => format!("61{seven}"),
        Country::China => format!("1380{seven}"),
        Country::India => format!("981{seven}"),
        Country::Uae => format!("50{seven}"),
        Country::Russia => format!("916{seven}"),
        Country::Poland => format!("51{seven}"),
        Country::Nigeria => format!("803{seven}"),
        Country::Japan => format!("901{seven}"),
        Country::Germany => format!("1512{seven}"),
        Country::France => format!("61{seven}"),
        Country::Korea => format!("101{seven}"),
    };
    Phone { country, nsn }
}

fn group(nsn: &str, country: Country, sep: &str) -> String {
    let sizes: &[usize] = match (nsn.len(), country) {
        (9, _) => &[2, 3, 4],
        (10, Country::Uk | Country::Japan | Country::Korea) => &[2, 4, 4],
        (10, _) => &[3, 3, 4],
        (11, _) => &[3, 4, 4],
        _ => &[nsn.len()],
    };
    let mut parts = Vec::new();
    let mut at = 0;
    for &s in sizes {
        let end = (at + s).min(nsn.len());
        parts.push(&nsn[at..end]);
        at = end;
    }
    if at < nsn.len() {
        parts.push(&nsn[at..]);
    }
    parts.join(sep)
}

/// Formats a phone in one of many real-world styles. Non-US numbers always carry their
/// country code (`+` or `00`), so every style parses to the same number.
fn format_phone(p: &Phone, style: u32) -> String {
    let cc = calling_code(p.country);
    if p.country == Country::Us {
        let (a, n, l) = (&p.nsn[0..3], &p.nsn[3..6], &p.nsn[6..10]);
        return match style % 8 {
            0 => format!("+1 ({a}) {n}-{l}"),
            1 => format!("{a}.{n}.{l}"),
            2 => format!("({a}) {n}-{l}"),
            3 => format!("{a}-{n}-{l}"),
            4 => format!("+1{a}{n}{l}"),
            5 => format!("1-{a}-{n}-{l}"),
            6 => format!("+1 {a} {n} {l}"),
            _ => format!("001 {a} {n} {l}"),
        };
    }
    match style % 5 {
        0 => format!("+{cc} {}", group(&p.nsn, p.country, " ")),
        1 => format!("00{cc} {}", group(&p.nsn, p.country, " ")),
        2 => format!("+{cc}{}", p.nsn),
        3 if matches!(p.country, Country::Uk | Country::Germany | Country::France) => {
            format!("+{cc} (0){}", group(&p.nsn, p.country, " "))
        }
        _ => format!("+{cc}-{}", group(&p.nsn, p.country, "-")),
    }
}

fn linkedin_url(slug: &str, shape: u32) -> String {
    match shape % 6 {
        0 => format!("https://www.linkedin.com/in/{slug}"),
        1 => format!("https://linkedin.com/in/{slug}/"),
        2 => format!("linkedin.com/in/{slug}"),
        3 => format!("www.linkedin.com/in/{slug}?trk=public_profile"),
        4 => format!("http://uk.linkedin.com/in/{slug}"),
        _ => format!("https://www.linkedin.com/in/{slug}/?originalSubdomain=de"),
    }
}

/// The same address with the noise real CRMs have: capitals, surrounding spaces.
fn noisy_email(email: &str, rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..5) {
        0 => email.to_uppercase(),
        1 => format!("  {email} "),
        2 => {
            // Capitalise each dot-separated part of the local part and the domain.
            email
                .split('@')
                .map(|part| {
                    part.split('.')
                        .map(capitalise)
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect::<Vec<_>>()
                .join("@")
        }
        3 => format!("{} ", email.to_uppercase()),
        _ => format!(" {}", capitalise(email)),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// One edit (swap, deletion, doubling, substitution) that changes the name.
fn typo(name: &str, rng: &mut ChaCha8Rng) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() < 3 {
        return format!("{name}{}", chars.last().copied().unwrap_or('e'));
    }
    for _ in 0..8 {
        let mut c = chars.clone();
        let i = rng.random_range(1..c.len() - 1);
        match rng.random_range(0..4) {
            0 => c.swap(i, i + 1),
            1 => {
                c.remove(i);
            }
            2 => c.insert(i, c[i]),
            _ => {
                const KEYS: &[char] = &['a', 'e', 'i', 'o', 'u', 'n', 'r', 's', 't'];
                c[i] = KEYS.choose(rng).copied().unwrap_or('e');
            }
        }
        let out: String = c.into_iter().collect();
        if out != name {
            return out;
        }
    }
    format!("{name}{}", chars[chars.len() - 1])
}

// ---------------------------------------------------------------------------------------
// organisations

pub(crate) struct OrgRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) kind: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) website: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) deleted_at: Option<String>,
    pub(crate) messy: bool,
}

/// The stable facts of a base organisation.
pub(crate) struct OrgSpec {
    /// Name without legal suffix, e.g. `Blue Rock Capital`.
    pub(crate) core: String,
    pub(crate) words: Vec<&'static str>,
    pub(crate) kind: &'static str,
    pub(crate) suffix: &'static str,
    pub(crate) domain: Option<String>,
    pub(crate) location: usize,
    pub(crate) switchboard: Phone,
    /// How the organisation writes email addresses (0 first.last, 1 first_last, 2 last.first).
    pub(crate) email_style: u32,
}

pub(crate) fn org_spec(plan: &Plan, id: u32) -> OrgSpec {
    let seed = plan.seed;
    let mut rng = rng_for(seed, S_ORG_ROW ^ 0xA5A5, id);
    let (r, n, k, generation) = plan.names.org_name(seed, id);
    let (kind, kind_word) = ORG_KIND_WORDS[k];
    let mut words = vec![ORG_ROOTS[r], ORG_NOUNS[n]];
    words.extend(kind_word.split(' '));
    let mut core = words.join(" ");
    if generation > 0 {
        core.push_str(&format!(" {}", generation + 1));
    }
    let suffix = legal_suffixes(kind).choose(&mut rng).copied().unwrap_or("");
    let domain = org_flags(seed, id).has_domain.then(|| {
        let tld = tlds(kind).choose(&mut rng).copied().unwrap_or("com");
        let stem = fold(&format!("{}{}{}", ORG_ROOTS[r], ORG_NOUNS[n], kind_word));
        if generation > 0 {
            format!("{stem}{}.{tld}", generation + 1)
        } else {
            format!("{stem}.{tld}")
        }
    });
    let location = if rng.random_bool(0.7) {
        rng.random_range(0..US_LOCATIONS)
    } else {
        rng.random_range(0..LOCATIONS.len())
    };
    let m = 7_000_000 + (id.wrapping_mul(7_777_777).wrapping_add(4321)) % 1_000_000;
    let switchboard = phone_from(LOCATIONS[location].1, m, &mut rng);
    OrgSpec {
        core,
        words,
        kind,
        suffix,
        domain,
        location,
        switchboard,
        email_style: rng.random_range(0..3),
    }
}

fn with_suffix(core: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        core.to_owned()
    } else if let Some(s) = suffix.strip_prefix(',') {
        format!("{core},{s}")
    } else {
        format!("{core} {suffix}")
    }
}

pub(crate) fn org_row(plan: &Plan, config: &SyntheticConfig, id: u32) -> OrgRow {
    let seed = plan.seed;
    let mut rng = rng_for(seed, S_ORG_ROW, id);
    let messy = rng.random_bool(config.messy_rate.clamp(0.0, 1.0));
    let true_id = plan.true_org_of(id);
    let spec = org_spec(plan, true_id);
    let (created, updated) = created_updated(&mut rng);
    let style = ts_style(messy, &mut rng);
    let website_of = |d: &str, rng: &mut ChaCha8Rng| match rng.random_range(0..4) {
        0 => format!("https://www.{d}"),
        1 => format!("https://{d}/"),
        2 => format!("http://www.{d}"),
        _ => format!("www.{d}"),
    };
    let (name, domain, website) = match plan.org(id) {
        OrgRole::Base => {
            let website = spec.domain.as_deref().map(|d| website_of(d, &mut rng));
            (
                with_suffix(&spec.core, spec.suffix),
                spec.domain.clone(),
                website,
            )
        }
        OrgRole::Dup { kind, .. } => match kind {
            OrgDupKind::SuffixVariant => {
                let base_name = with_suffix(&spec.core, spec.suffix);
                let mut name = base_name.clone();
                for _ in 0..8 {
                    let suffix = SUFFIX_VARIANTS.choose(&mut rng).copied().unwrap_or("Inc.");
                    name = with_suffix(&spec.core, suffix);
                    if rng.random_bool(0.4) {
                        name = name.to_uppercase();
                    }
                    if name != base_name {
                        break;
                    }
                }
                if name == base_name {
                    name = with_suffix(&spec.core.to_uppercase(), "Corporation");
                }
                let domain = if rng.random_bool(0.5) {
                    spec.domain.clone()
                } else {
                    None
                };
                (name, domain, None)
            }
            OrgDupKind::SameDomain => {
                let name = match rng.random_range(0..3) {
                    // Drop the kind word ("Blue Rock" for "Blue Rock Capital").
                    0 => format!("{} {}", spec.words[0], spec.words[1]),
                    1 => format!("{} Management", spec.core),
                    _ => format!("{}{}", spec.words[0], spec.words[1..].join(" ")),
                };
                let domain = spec
                    .domain
                    .as_deref()
                    .map(|d| match rng.random_range(0..3) {
                        0 => d.to_owned(),
                        1 => format!("www.{d}"),
                        _ => d.to_uppercase(),
                    });
                let website = spec.domain.as_deref().map(|d| website_of(d, &mut rng));
                (name, domain, website)
            }
            OrgDupKind::Acronym => {
                let acronym: String = spec
                    .words
                    .iter()
                    .filter_map(|w| w.chars().next())
                    .collect::<String>()
                    .to_uppercase();
                let name = match rng.random_range(0..3) {
                    0 => acronym,
                    1 => with_suffix(&acronym, spec.suffix),
                    _ => format!("{acronym} ({})", spec.words[spec.words.len() - 1]),
                };
                (name, None, None)
            }
        },
    };
    let mut description = rng
        .random_bool(0.7)
        .then(|| text::description(&spec.core, spec.kind, &mut rng));
    let mut location = Some(LOCATIONS[spec.location].0.to_owned());
    let mut kind = Some(spec.kind.to_owned());
    let mut domain = domain;
    let mut deleted_at = None;
    let in_truth = !matches!(plan.org(id), OrgRole::Base) || plan.org_dups.contains_key(&id);
    if messy {
        match rng.random_range(0..6) {
            0 => {
                if let Some(d) = description.as_mut() {
                    *d = text::as_html(std::slice::from_ref(d), &mut rng);
                }
            }
            1 => {
                location = None;
                kind = None;
            }
            2 => {
                if let Some(d) = domain.as_mut() {
                    *d = format!(" https://{}/ ", d.to_uppercase());
                }
            }
            3 => {
                let odd = ODD_UNICODE.choose(&mut rng).copied().unwrap_or("");
                description = Some(format!("{} {odd}", description.unwrap_or_default()));
            }
            4 if !in_truth => deleted_at = Some(fmt_ts(updated, style)),
            _ => description = None,
        }
    }
    OrgRow {
        id: i64::from(id),
        name,
        kind,
        domain,
        website,
        description,
        location,
        created_at: fmt_ts(created, style),
        updated_at: fmt_ts(updated, style),
        deleted_at,
        messy,
    }
}

// ---------------------------------------------------------------------------------------
// people

pub(crate) struct PersonRow {
    pub(crate) id: i64,
    pub(crate) first_name: Option<String>,
    pub(crate) last_name: Option<String>,
    pub(crate) full_name: String,
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) organization_id: Option<i64>,
    pub(crate) linkedin_url: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) bio: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) deleted_at: Option<String>,
    pub(crate) messy: bool,
}

/// The stable facts of a base-like person (a base row or a trap row).
pub(crate) struct PersonSpec {
    pub(crate) culture: usize,
    pub(crate) first_idx: usize,
    pub(crate) first: String,
    pub(crate) last: String,
    pub(crate) middle: Option<char>,
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<Phone>,
    pub(crate) phone_style: u32,
    pub(crate) linkedin_slug: Option<String>,
    pub(crate) linkedin_shape: u32,
    pub(crate) title: Option<String>,
    pub(crate) location: Option<String>,
}

impl PersonSpec {
    pub(crate) fn full_name(&self) -> String {
        match self.middle {
            Some(m) => format!("{} {m}. {}", self.first, self.last),
            None => format!("{} {}", self.first, self.last),
        }
    }
}

fn email_local(first: &str, last: &str, middle: Option<char>, style: u32) -> String {
    let (f, l) = (fold(first), fold(last));
    let m = middle.map(|c| c.to_ascii_lowercase().to_string());
    match (style % 3, m) {
        (0, None) => format!("{f}.{l}"),
        (0, Some(m)) => format!("{f}.{m}.{l}"),
        (1, None) => format!("{f}_{l}"),
        (1, Some(m)) => format!("{f}_{m}_{l}"),
        (_, None) => format!("{l}.{f}"),
        (_, Some(m)) => format!("{l}.{m}.{f}"),
    }
}

/// A free-mail address unique to person `id`.
fn free_mail(
    first: &str,
    last: &str,
    culture: usize,
    id: u32,
    seed: u64,
    rng: &mut ChaCha8Rng,
) -> String {
    let n = scramble24(id, seed);
    let (f, l) = (fold(first), fold(last));
    let initial = f.chars().next().unwrap_or('x');
    let local = match rng.random_range(0..4) {
        0 => format!("{f}.{l}{n}"),
        1 => format!("{initial}{l}{n}"),
        2 => format!("{f}{n}"),
        _ => format!("{l}.{f}{n}"),
    };
    let domain = if rng.random_bool(0.25) {
        CULTURES[culture]
            .mail
            .choose(rng)
            .copied()
            .unwrap_or("gmail.com")
    } else {
        GLOBAL_MAIL.choose(rng).copied().unwrap_or("gmail.com")
    };
    format!("{local}@{domain}")
}

fn person_mobile(id: u32, country: Country, rng: &mut ChaCha8Rng) -> Phone {
    // 4_194_301 is coprime with 7_000_000, so the value is unique per id below 7M.
    let m = (u64::from(id) * 4_194_301 + 1_234_567) % 7_000_000;
    phone_from(country, m as u32, rng)
}

/// The spec of a base-like person: base rows and trap rows.
pub(crate) fn person_spec(plan: &Plan, id: u32) -> PersonSpec {
    let seed = plan.seed;
    let p = plan.person(id);
    let mut rng = rng_for(seed, S_PERSON_ROW ^ 0x5A5A, id);
    let flags = person_flags(seed, id);
    let (culture, first_idx, last_idx, middle) = match p.role {
        PersonRole::Trap {
            partner,
            kind: TrapKind::SameNameDifferentPerson,
        } => {
            let partner_plan = plan.person(partner);
            plan.names
                .person_name(seed, partner_plan.true_org, partner_plan.slot)
        }
        _ => plan.names.person_name(seed, p.true_org, p.slot),
    };
    let c = &CULTURES[culture];
    let first = c.first[first_idx].0.to_owned();
    let last = c.last[last_idx].to_owned();
    let org = (p.true_org != 0).then(|| org_spec(plan, p.true_org));
    let email = flags.has_email.then(|| match &org {
        Some(o) if flags.corporate_email && o.domain.is_some() => {
            let domain = o.domain.as_deref().unwrap_or_default();
            format!(
                "{}@{domain}",
                email_local(&first, &last, middle, o.email_style)
            )
        }
        _ => free_mail(&first, &last, culture, id, seed, &mut rng),
    });
    let country = if rng.random_bool(0.7) {
        Country::Us
    } else {
        c.country
    };
    let phone = if p.switchboard {
        org.as_ref().map(|o| o.switchboard.clone())
    } else {
        flags
            .has_phone
            .then(|| person_mobile(id, country, &mut rng))
    };
    let linkedin_slug = flags.has_linkedin.then(|| {
        format!(
            "{}-{}-{:08x}",
            fold(&first),
            fold(&last),
            scramble32(id, seed)
        )
    });
    let title = match &org {
        Some(o) => rng.random_bool(0.92).then(|| {
            titles(o.kind)
                .choose(&mut rng)
                .copied()
                .unwrap_or("Partner")
                .to_owned()
        }),
        None => [
            "Angel Investor",
            "Independent Consultant",
            "Advisor",
            "Student",
        ]
        .choose(&mut rng)
        .map(|s| (*s).to_owned()),
    };
    let location = match &org {
        Some(o) if rng.random_bool(0.8) => Some(LOCATIONS[o.location].0.to_owned()),
        _ => rng.random_bool(0.7).then(|| {
            LOCATIONS
                .choose(&mut rng)
                .map(|l| l.0.to_owned())
                .unwrap_or_default()
        }),
    };
    PersonSpec {
        culture,
        first_idx,
        first,
        last,
        middle,
        email,
        phone,
        phone_style: rng.random_range(0..8),
        linkedin_slug,
        linkedin_shape: rng.random_range(0..6),
        title,
        location,
    }
}

pub(crate) fn person_row(plan: &Plan, config: &SyntheticConfig, id: u32) -> PersonRow {
    let seed = plan.seed;
    let p = plan.person(id);
    let mut rng = rng_for(seed, S_PERSON_ROW, id);
    let messy = rng.random_bool(config.messy_rate.clamp(0.0, 1.0));
    let (created, updated) = created_updated(&mut rng);
    let style = ts_style(messy, &mut rng);
    let display_org = (p.display_org != 0).then_some(i64::from(p.display_org));

    let mut row = match p.role {
        PersonRole::Base | PersonRole::Trap { .. } => {
            let s = person_spec(plan, id);
            let full_name = s.full_name();
            let org_name = (p.true_org != 0).then(|| org_spec(plan, p.true_org).core);
            let bio = rng.random_bool(0.35).then(|| {
                let other = other_org_name(plan, &mut rng);
                text::bio(
                    &s.first,
                    s.title.as_deref(),
                    org_name.as_deref().unwrap_or("a startup"),
                    &other,
                    &mut rng,
                )
            });
            PersonRow {
                id: i64::from(id),
                first_name: Some(s.first.clone()),
                last_name: Some(s.last.clone()),
                full_name,
                email: s.email.clone(),
                phone: s.phone.as_ref().map(|ph| format_phone(ph, s.phone_style)),
                title: s.title.clone(),
                organization_id: display_org,
                linkedin_url: s
                    .linkedin_slug
                    .as_deref()
                    .map(|slug| linkedin_url(slug, s.linkedin_shape)),
                location: s.location.clone(),
                bio,
                created_at: String::new(),
                updated_at: String::new(),
                deleted_at: None,
                messy,
            }
        }
        PersonRole::Dup { of, kind } => {
            dup_person(plan, id, of, kind, display_org, &mut rng, messy)
        }
    };
    row.created_at = fmt_ts(created, style);
    row.updated_at = fmt_ts(updated, style);
    if messy {
        apply_person_mess(&mut row, plan.in_truth(id), style, updated, &mut rng);
    }
    row
}

fn other_org_name(plan: &Plan, rng: &mut ChaCha8Rng) -> String {
    if plan.base_orgs.is_empty() {
        return "a large bank".to_owned();
    }
    let o = plan.base_orgs[pick(rng.random(), plan.base_orgs.len())];
    org_spec(plan, o).core
}

fn dup_person(
    plan: &Plan,
    id: u32,
    of: u32,
    kind: PersonDupKind,
    display_org: Option<i64>,
    rng: &mut ChaCha8Rng,
    messy: bool,
) -> PersonRow {
    let seed = plan.seed;
    let b = person_spec(plan, of);
    let c = &CULTURES[b.culture];
    let nicknames = c.first[b.first_idx].1;
    let own_free_mail = |first: &str, last: &str, rng: &mut ChaCha8Rng| {
        free_mail(first, last, b.culture, id, seed, rng)
    };
    let other_phone_style = |rng: &mut ChaCha8Rng| (b.phone_style + rng.random_range(1..8)) % 8;
    let mut first = b.first.clone();
    let mut last = b.last.clone();
    let mut full = b.full_name();
    let mut email = None;
    let mut phone = None;
    let mut linkedin = None;
    let mut title = b.title.clone();
    match kind {
        PersonDupKind::SameEmail => {
            match rng.random_range(0..3) {
                0 => {}
                1 if !nicknames.is_empty() => {
                    first = nicknames
                        .choose(rng)
                        .copied()
                        .unwrap_or(&b.first)
                        .to_owned();
                    full = format!("{first} {last}");
                }
                _ => {
                    first = initial(&b.first);
                    full = format!("{first} {last}");
                }
            }
            let e = b.email.clone().unwrap_or_default();
            email = Some(if rng.random_bool(0.75) {
                noisy_email(&e, rng)
            } else {
                e
            });
            if rng.random_bool(0.3) {
                phone = b
                    .phone
                    .as_ref()
                    .map(|ph| format_phone(ph, other_phone_style(rng)));
            }
        }
        PersonDupKind::Nickname => {
            first = nicknames
                .choose(rng)
                .copied()
                .unwrap_or(&b.first)
                .to_owned();
            full = format!("{first} {last}");
            if rng.random_bool(0.5) {
                email = Some(own_free_mail(&first, &last, rng));
            }
        }
        PersonDupKind::Initials => {
            first = initial(&b.first);
            full = match rng.random_range(0..3) {
                0 => format!("{first} {last}"),
                1 => format!("{} {last}", first.trim_end_matches('.')),
                _ => format!("{first}{last}"),
            };
            if rng.random_bool(0.3) {
                email = Some(own_free_mail(&b.first, &last, rng));
            }
        }
        PersonDupKind::Typo => {
            if rng.random_bool(0.5) {
                last = typo(&b.last, rng);
            } else {
                first = typo(&b.first, rng);
            }
            full = format!("{first} {last}");
            if rng.random_bool(0.5) {
                phone = b
                    .phone
                    .as_ref()
                    .map(|ph| format_phone(ph, other_phone_style(rng)));
            }
        }
        PersonDupKind::SwappedNames => {
            std::mem::swap(&mut first, &mut last);
            full = if rng.random_bool(0.3) {
                format!("{} {last}", first.to_uppercase())
            } else {
                format!("{first} {last}")
            };
        }
        PersonDupKind::NewJobDifferentEmail => {
            let p = plan.person(id);
            let org = org_spec(plan, p.true_org);
            title = titles(org.kind).choose(rng).map(|t| (*t).to_owned());
            email = Some(match &org.domain {
                Some(d) => format!(
                    "{}@{d}",
                    email_local(&b.first, &b.last, b.middle, org.email_style)
                ),
                None => own_free_mail(&b.first, &b.last, rng),
            });
            // Shared hard evidence: the LinkedIn profile, else the personal mobile.
            match (&b.linkedin_slug, &b.phone) {
                (Some(slug), _) => {
                    linkedin = Some(linkedin_url(
                        slug,
                        (b.linkedin_shape + rng.random_range(1..6)) % 6,
                    ));
                }
                (None, Some(ph)) => phone = Some(format_phone(ph, other_phone_style(rng))),
                (None, None) => {}
            }
        }
    }
    PersonRow {
        id: i64::from(id),
        first_name: Some(first),
        last_name: Some(last),
        full_name: full,
        email,
        phone,
        title,
        organization_id: display_org,
        linkedin_url: linkedin,
        location: b.location.clone(),
        bio: None,
        created_at: String::new(),
        updated_at: String::new(),
        deleted_at: None,
        messy,
    }
}

fn initial(first: &str) -> String {
    first
        .chars()
        .next()
        .map(|c| format!("{c}."))
        .unwrap_or_default()
}

fn apply_person_mess(
    row: &mut PersonRow,
    in_truth: bool,
    style: TsStyle,
    updated: i64,
    rng: &mut ChaCha8Rng,
) {
    for _ in 0..rng.random_range(1..=2) {
        match rng.random_range(0..8) {
            0 => {
                if let Some(e) = row.email.as_mut() {
                    *e = noisy_email(e, rng);
                }
            }
            1 => {
                row.title = None;
                row.location = None;
            }
            2 => {
                let b = row
                    .bio
                    .take()
                    .unwrap_or_else(|| format!("About {}", row.full_name));
                row.bio = Some(text::as_html(&[b], rng));
            }
            3 => {
                if let Some(t) = row.title.as_mut() {
                    t.push_str(" 🚀");
                }
            }
            4 if !in_truth => {
                row.first_name = None;
                row.last_name = None;
            }
            5 if !in_truth => {
                // Odd unicode in the name: decomposed accents, zero-width space, RTL marks.
                row.full_name = match rng.random_range(0..3) {
                    0 => row.full_name.replacen(' ', " \u{200B}", 1),
                    1 => format!("\u{200F}{}\u{200E}", row.full_name),
                    _ => format!(
                        "{} {}",
                        row.full_name,
                        ODD_UNICODE.choose(rng).copied().unwrap_or("")
                    ),
                };
            }
            6 if !in_truth => row.deleted_at = Some(fmt_ts(updated, style)),
            _ => {
                row.bio = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// interactions

pub(crate) struct InteractionRow {
    pub(crate) id: i64,
    pub(crate) kind: &'static str,
    pub(crate) occurred_at: String,
    pub(crate) subject: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) organization_id: Option<i64>,
    pub(crate) created_by: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) deleted_at: Option<String>,
    pub(crate) participants: Vec<i64>,
    pub(crate) messy: bool,
    pub(crate) large: bool,
}

/// Size of the deliberately huge notes.
pub(crate) const LARGE_NOTE_BYTES: usize = 1 << 20;

pub(crate) fn interaction_row(
    plan: &Plan,
    config: &SyntheticConfig,
    id: u32,
    large: bool,
) -> InteractionRow {
    let seed = plan.seed;
    let mut rng = rng_for(seed, S_INTERACTION, id);
    let messy = rng.random_bool(config.messy_rate.clamp(0.0, 1.0));
    let kind = if large {
        "note"
    } else {
        ["meeting", "call", "email", "note"]
            .choose(&mut rng)
            .copied()
            .unwrap_or("note")
    };
    let org = if plan.base_orgs.is_empty() || rng.random_bool(0.06) {
        0
    } else {
        plan.base_orgs[skewed(rng.random(), plan.base_orgs.len())]
    };
    let display_org = match plan.org_dups.get(&org) {
        Some(d) if rng.random_bool(0.15) => d[pick(rng.random(), d.len())],
        _ => org,
    };
    // Participants: people of the organisation, sometimes someone from elsewhere.
    let mut participants: Vec<i64> = Vec::new();
    if !plan.people.is_empty() {
        let members = if org != 0 {
            plan.members(display_org)
        } else {
            &[]
        };
        let members = if members.is_empty() && org != 0 {
            plan.members(org)
        } else {
            members
        };
        let want = rng.random_range(1..=3usize);
        for _ in 0..want {
            if members.is_empty() {
                break;
            }
            participants.push(i64::from(members[pick(rng.random(), members.len())]));
        }
        if participants.is_empty() || rng.random_bool(0.15) {
            participants.push(rng.random_range(1..=plan.people.len() as i64));
        }
        participants.sort_unstable();
        participants.dedup();
    }
    let names: Vec<String> = participants
        .iter()
        .map(|&pid| {
            let p = plan.person(pid as u32);
            match p.role {
                PersonRole::Dup { of, .. } => person_spec(plan, of).full_name(),
                _ => person_spec(plan, pid as u32).full_name(),
            }
        })
        .collect();
    let org_name = if org != 0 {
        org_spec(plan, org).core
    } else {
        "the company".to_owned()
    };
    let others: Vec<String> = (0..3).map(|_| other_org_name(plan, &mut rng)).collect();
    let me_email = FIRM_TEAM
        .choose(&mut rng)
        .copied()
        .unwrap_or("alex@ten31.vc");
    let me = capitalise(me_email.split('@').next().unwrap_or("alex"));
    let slots = text::Slots {
        people: &names,
        org: &org_name,
        others: &others,
        me: &me,
    };
    let subject = text::subject(kind, &slots, &mut rng);
    let mut paragraphs = text::body_paragraphs(&slots, &mut rng);
    if kind == "email" {
        let greeting = names
            .first()
            .and_then(|n| n.split(' ').next())
            .unwrap_or("all");
        paragraphs.insert(0, format!("Hi {greeting},"));
        paragraphs.push(format!("Best,\n{me}"));
    }
    let occurred = BASE_MS - rng.random_range(0..4 * YEAR_MS);
    let created = (occurred + rng.random_range(0..3 * DAY_MS)).min(BASE_MS);
    let r: f64 = rng.random();
    let updated = created + ((BASE_MS - created) as f64 * r * r * r * r) as i64;
    let style = ts_style(messy, &mut rng);
    let mut row = InteractionRow {
        id: i64::from(id),
        kind,
        occurred_at: fmt_ts(occurred, style),
        subject: Some(subject),
        body: None,
        organization_id: (display_org != 0).then_some(i64::from(display_org)),
        created_by: Some(me_email.to_owned()),
        created_at: fmt_ts(created, style),
        updated_at: fmt_ts(updated, style),
        deleted_at: None,
        participants,
        messy,
        large,
    };
    let mut html = false;
    if messy {
        match rng.random_range(0..7) {
            0 | 1 => html = true,
            2 => paragraphs.push(
                (0..3)
                    .map(|_| ODD_UNICODE.choose(&mut rng).copied().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            3 => row.subject = None,
            4 => row.organization_id = None,
            5 => row.created_by = None,
            _ => row.deleted_at = Some(fmt_ts(updated, style)),
        }
    }
    let mut body = if html {
        text::as_html(&paragraphs, &mut rng)
    } else {
        paragraphs.join("\n\n")
    };
    if large {
        let seedling = body.clone();
        let mut i = 0u32;
        while body.len() < LARGE_NOTE_BYTES {
            i += 1;
            body.push_str(&format!("\n\n[{i}] "));
            body.push_str(&seedling);
        }
        let mut cut = LARGE_NOTE_BYTES;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    row.body = Some(body);
    row
}

// ---------------------------------------------------------------------------------------
// deals

pub(crate) struct DealRow {
    pub(crate) id: i64,
    pub(crate) organization_id: Option<i64>,
    pub(crate) name: String,
    pub(crate) stage: Option<String>,
    pub(crate) amount_usd: Option<f64>,
    pub(crate) notes: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) deleted_at: Option<String>,
    pub(crate) messy: bool,
}

pub(crate) fn deal_row(plan: &Plan, config: &SyntheticConfig, id: u32) -> DealRow {
    let seed = plan.seed;
    let mut rng = rng_for(seed, S_DEAL, id);
    let messy = rng.random_bool(config.messy_rate.clamp(0.0, 1.0));
    let pool = if plan.startups.is_empty() {
        &plan.base_orgs
    } else {
        &plan.startups
    };
    let org = (!pool.is_empty()).then(|| pool[skewed(rng.random(), pool.len())]);
    let org_name = org.map_or_else(|| "Unnamed company".to_owned(), |o| org_spec(plan, o).core);
    let (round, lo, hi) = ROUNDS
        .choose(&mut rng)
        .copied()
        .unwrap_or(("Seed", 1e6, 4e6));
    let amount = (rng.random_range(lo..hi) / 50_000.0).round() * 50_000.0;
    let name = match rng.random_range(0..3) {
        0 => format!("{org_name} {round}"),
        1 => format!("{org_name} – {round}"),
        _ => format!("{round}: {org_name}"),
    };
    let stage = DEAL_STAGES.choose(&mut rng).map(|s| (*s).to_owned());
    let others: Vec<String> = (0..2).map(|_| other_org_name(plan, &mut rng)).collect();
    let me = capitalise(
        FIRM_TEAM
            .choose(&mut rng)
            .and_then(|e| e.split('@').next())
            .unwrap_or("alex"),
    );
    let notes = rng.random_bool(0.7).then(|| {
        let slots = text::Slots {
            people: &[],
            org: &org_name,
            others: &others,
            me: &me,
        };
        text::body_paragraphs(&slots, &mut rng).join("\n\n")
    });
    let (created, updated) = created_updated(&mut rng);
    let style = ts_style(messy, &mut rng);
    let mut row = DealRow {
        id: i64::from(id),
        organization_id: org.map(i64::from),
        name,
        stage,
        amount_usd: Some(amount),
        notes,
        created_at: fmt_ts(created, style),
        updated_at: fmt_ts(updated, style),
        deleted_at: None,
        messy,
    };
    if messy {
        match rng.random_range(0..5) {
            0 => row.amount_usd = None,
            1 => row.stage = None,
            2 => {
                if let Some(n) = row.notes.take() {
                    row.notes = Some(text::as_html(&[n], &mut rng));
                }
            }
            3 => row.deleted_at = Some(fmt_ts(updated, style)),
            _ => row.organization_id = None,
        }
    }
    row
}

/// Ids of the deliberately huge notes (a few, only when messy rows are wanted).
pub(crate) fn large_note_ids(config: &SyntheticConfig) -> Vec<u32> {
    let n = u32::try_from(config.interactions).unwrap_or(u32::MAX);
    if config.messy_rate <= 0.0 || n == 0 {
        return Vec::new();
    }
    let count = (n / 50_000).clamp(1, 16);
    let mut ids: Vec<u32> = (0..count)
        .map(|k| {
            1 + pick(
                splitmix(mix(config.seed, 0x1A26E, u64::from(k))),
                n as usize,
            ) as u32
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold("José"), "jose");
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("de la Cruz"), "delacruz");
        assert_eq!(fold("Małgorzata"), "malgorzata");
        assert_eq!(fold("Müller"), "muller");
    }

    #[test]
    fn scrambles_are_injective_on_a_range() {
        let mut seen = std::collections::HashSet::new();
        for id in 1..200_000u32 {
            assert!(seen.insert(scramble24(id, 99)));
        }
    }

    #[test]
    fn phone_styles_keep_the_digits() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for country in [
            Country::Us,
            Country::Uk,
            Country::China,
            Country::Uae,
            Country::Nigeria,
        ] {
            let p = phone_from(country, 1_234_567, &mut rng);
            for style in 0..8 {
                let s = format_phone(&p, style);
                let digits: String = s.chars().filter(char::is_ascii_digit).collect();
                assert!(digits.ends_with(&p.nsn), "{s} lost digits of {}", p.nsn);
            }
        }
    }

    #[test]
    fn typos_always_change_the_name() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for name in ["Anna", "Li", "Bob", "Oluwadamilola", "Zoë"] {
            for _ in 0..50 {
                assert_ne!(typo(name, &mut rng), name);
            }
        }
    }

    #[test]
    fn timestamp_styles() {
        let ms = 1_780_272_000_123;
        assert_eq!(fmt_ts(ms, TsStyle::IsoMillis), "2026-06-01T00:00:00.123Z");
        assert_eq!(fmt_ts(ms, TsStyle::IsoSeconds), "2026-06-01T00:00:00Z");
        assert_eq!(fmt_ts(ms, TsStyle::Sqlite), "2026-06-01 00:00:00");
    }
}
