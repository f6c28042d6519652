//! Believable free text: interaction bodies and subjects, bios, descriptions, deal notes.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::data::{LOCATIONS, ROUNDS, TOPICS};

/// What a template may mention.
pub(crate) struct Slots<'a> {
    /// Participant names (may be empty).
    pub(crate) people: &'a [String],
    /// The organisation the text is about.
    pub(crate) org: &'a str,
    /// Other organisations that may be mentioned.
    pub(crate) others: &'a [String],
    /// The firm member writing.
    pub(crate) me: &'a str,
}

const OPENING: &[&str] = &[
    "Met with {p} from {org} to discuss {topic}.",
    "{p} walked us through the latest numbers; ARR is up {pct}% since last quarter.",
    "Caught up with {p} and {p2} about {topic} and how it affects {other}.",
    "Quick call with {p} to follow up on {topic}.",
    "{org} is raising a {raise} and wants us to lead.",
    "Intro from {p2}, who has known the {org} team for years.",
    "{p} is spending most of their time on {topic} right now.",
    "Second meeting with {org}; this time {p} brought the whole leadership team.",
    "{p} reached out after our post on {topic}.",
    "Reconnected with {p} at the conference in {city}.",
];

const MIDDLE: &[&str] = &[
    "They currently work with {other} and are evaluating {topic} as an alternative.",
    "Main concern is {topic}; {p} thinks it can be solved by {month}.",
    "The team has grown to {n} people, mostly engineers in {city}.",
    "We pushed on {topic2}; answers were thoughtful but the plan needs more detail.",
    "{p2} raised questions about {topic} and regulatory exposure.",
    "Burn is about {small} per month, giving them roughly {n} months of runway.",
    "Customers include {other} and two large exchanges.",
    "They want to close the round by {month}, with {other} already committed.",
    "Technical diligence on {topic} went well; the architecture is sound.",
    "{p} previously built {topic2} tooling at {other} and sold it in {year}.",
    "Pricing is usage-based; the top ten customers are {share}% of revenue.",
    "They asked for help with {topic2} and introductions to {other}.",
    "Valuation expectations are high ({amount} pre-money) but not crazy for the space.",
    "The board currently has {p2} and one independent director.",
    "Regulators in {city} have been constructive about {topic}.",
    "Their pipeline for {month} looks strong, mostly mid-market fintechs.",
];

const CLOSING: &[&str] = &[
    "Next step: send the term sheet draft to {p} by {month}.",
    "Action item for {me}: reference calls with {other}.",
    "Will loop in {p2} for the partner meeting.",
    "Overall positive. Revisit after they hit {pct}% month-over-month growth.",
    "Passing for now, but stay close to {p}.",
    "Schedule a follow-up in {month} once the audit is done.",
    "{p} will share the data room link this week.",
    "Share notes with the team before Monday's pipeline review.",
];

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Fills a template's placeholders.
fn fill(template: &str, s: &Slots<'_>, rng: &mut ChaCha8Rng) -> String {
    let mut out = String::with_capacity(template.len() + 40);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = &rest[start + 1..start + end];
        match key {
            "p" => out.push_str(person(s, 0, rng)),
            "p2" => out.push_str(person(s, 1, rng)),
            "org" => out.push_str(s.org),
            "other" => out.push_str(other(s, rng)),
            "topic" | "topic2" => out.push_str(TOPICS.choose(rng).copied().unwrap_or("the round")),
            "pct" => out.push_str(&rng.random_range(5..180).to_string()),
            "share" => out.push_str(&rng.random_range(12..70).to_string()),
            "raise" => {
                let (round, lo, hi) = ROUNDS.choose(rng).copied().unwrap_or(("Seed", 1e6, 4e6));
                out.push_str(round);
                out.push_str(" of roughly ");
                out.push_str(&money(rng.random_range(lo..hi)));
            }
            "n" => out.push_str(&rng.random_range(4..60).to_string()),
            "month" => out.push_str(MONTHS.choose(rng).copied().unwrap_or("June")),
            "year" => out.push_str(&rng.random_range(2012..2025).to_string()),
            "city" => out.push_str(city(rng)),
            "me" => out.push_str(s.me),
            "round" => out.push_str(ROUNDS.choose(rng).map_or("round", |r| r.0)),
            "amount" => out.push_str(&money(rng.random_range(2.0..60.0) * 1_000_000.0)),
            "small" => out.push_str(&money(rng.random_range(80.0..900.0) * 1_000.0)),
            _ => {
                out.push('{');
                out.push_str(key);
                out.push('}');
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    capitalise_first(out)
}

/// Sentences start with a capital even when they start with a placeholder ("the founder").
fn capitalise_first(s: String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_lowercase() => c.to_uppercase().chain(chars).collect(),
        _ => s,
    }
}

fn person<'a>(s: &'a Slots<'_>, k: usize, rng: &mut ChaCha8Rng) -> &'a str {
    match s.people.len() {
        0 => {
            if k == 0 {
                "the founder"
            } else {
                "their lead investor"
            }
        }
        n if k < n => &s.people[k],
        n => &s.people[rng.random_range(0..n)],
    }
}

fn other<'a>(s: &'a Slots<'_>, rng: &mut ChaCha8Rng) -> &'a str {
    s.others.choose(rng).map_or("another fund", String::as_str)
}

fn city(rng: &mut ChaCha8Rng) -> &'static str {
    let (loc, _) = LOCATIONS
        .choose(rng)
        .copied()
        .unwrap_or(("Austin, TX", super::data::Country::Us));
    loc.split(',').next().unwrap_or(loc)
}

/// `$4.2M`, `$350K`.
pub(crate) fn money(amount: f64) -> String {
    if amount >= 1_000_000.0 {
        format!("${:.1}M", amount / 1_000_000.0)
    } else {
        format!("${:.0}K", amount / 1_000.0)
    }
}

/// A multi-paragraph body: an opening, one or two middle paragraphs, a closing.
pub(crate) fn body_paragraphs(s: &Slots<'_>, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut paragraphs = Vec::with_capacity(4);
    let mut opening = fill(OPENING.choose(rng).copied().unwrap_or(""), s, rng);
    opening.push(' ');
    opening.push_str(&fill(MIDDLE.choose(rng).copied().unwrap_or(""), s, rng));
    paragraphs.push(opening);
    for _ in 0..rng.random_range(1..=2) {
        let sentences: Vec<String> = (0..rng.random_range(2..=4))
            .map(|_| fill(MIDDLE.choose(rng).copied().unwrap_or(""), s, rng))
            .collect();
        paragraphs.push(sentences.join(" "));
    }
    paragraphs.push(fill(CLOSING.choose(rng).copied().unwrap_or(""), s, rng));
    paragraphs
}

/// A subject line for an interaction kind.
pub(crate) fn subject(kind: &str, s: &Slots<'_>, rng: &mut ChaCha8Rng) -> String {
    let templates: &[&str] = match kind {
        "meeting" => &[
            "Intro meeting with {org}",
            "{org} – partner meeting",
            "Diligence session: {org}",
            "Board meeting prep ({org})",
            "Coffee with {p}",
        ],
        "call" => &[
            "Call with {p} re {topic}",
            "Follow-up call: {org}",
            "Reference call on {p}",
            "Quarterly update call with {org}",
        ],
        "email" => &[
            "Re: {topic} – {org}",
            "Fwd: {org} deck",
            "Term sheet draft – {org}",
            "Intro: {p} <> {me}",
            "Re: Re: follow-up on {topic}",
        ],
        _ => &[
            "Notes: {org}",
            "Thoughts on {topic}",
            "Pipeline note – {org}",
            "Market map: {topic}",
        ],
    };
    fill(templates.choose(rng).copied().unwrap_or("{org}"), s, rng)
}

/// A short biography.
pub(crate) fn bio(
    first: &str,
    title: Option<&str>,
    org: &str,
    other: &str,
    rng: &mut ChaCha8Rng,
) -> String {
    let role = title.unwrap_or("a leader");
    let topic = TOPICS.choose(rng).copied().unwrap_or("fintech");
    match rng.random_range(0..3) {
        0 => format!("{first} is {role} at {org}. Previously at {other}. Focused on {topic}."),
        1 => format!(
            "{first} joined {org} after {} years at {other}, where they worked on {topic}. \
             Angel investor and occasional writer.",
            rng.random_range(3..15)
        ),
        _ => format!(
            "Works on {topic} at {org}. Before that: {other}. Based in {}.",
            city(rng)
        ),
    }
}

/// An organisation description.
pub(crate) fn description(name: &str, kind: &str, rng: &mut ChaCha8Rng) -> String {
    let topic = TOPICS.choose(rng).copied().unwrap_or("fintech");
    let topic2 = TOPICS.choose(rng).copied().unwrap_or("payments");
    match kind {
        "startup" => format!(
            "{name} builds infrastructure for {topic}. Founded in {}, the company serves \
             exchanges, fintechs and corporate treasuries, and is working on {topic2}.",
            rng.random_range(2014..2026)
        ),
        "fund" => format!(
            "{name} is an early-stage investor focused on {topic} and {topic2}. Typical \
             cheque size {} to {}.",
            money(rng.random_range(0.25..2.0) * 1_000_000.0),
            money(rng.random_range(3.0..15.0) * 1_000_000.0)
        ),
        "lp" => format!(
            "{name} allocates to venture funds with a long-term view; interested in {topic}."
        ),
        "law_firm" => format!(
            "{name} advises emerging companies and funds on financings, {topic} and \
             regulatory matters."
        ),
        _ => format!(
            "{name} provides services to funds and portfolio companies, including {topic2}."
        ),
    }
}

/// Wraps paragraphs as an HTML email, with the kinds of markup CRMs receive.
pub(crate) fn as_html(paragraphs: &[String], rng: &mut ChaCha8Rng) -> String {
    let mut html = String::new();
    if rng.random_bool(0.3) {
        html.push_str(
            "<html><head><style>p { margin: 0; } .sig { color: #888; }</style></head><body>",
        );
    }
    html.push_str("<div dir=\"ltr\">");
    for p in paragraphs {
        let p = p.replace('&', "&amp;").replace(" – ", " &ndash; ");
        html.push_str("<p>");
        html.push_str(&p);
        html.push_str("</p>\n");
    }
    if rng.random_bool(0.5) {
        html.push_str("<br><div class=\"sig\">--&nbsp;<br>Sent from my iPhone</div>");
    }
    if rng.random_bool(0.3) {
        html.push_str("<div class=\"gmail_quote\"><blockquote>&gt; On Mon, someone wrote:<br>&gt; sounds good</blockquote></div>");
    }
    html.push_str("</div>");
    if html.starts_with("<html>") {
        html.push_str("</body></html>");
    }
    html
}
