//! Normalisers: pure functions from raw CRM fields to comparable keys.
//!
//! Each takes hostile input in its stride (empty, NULL, 10 kB, mixed scripts, emoji,
//! control chars) and returns `None` or an empty value rather than a garbage key.

mod domain;
mod email;
mod linkedin;
mod name;
mod org_name;
mod phone;
mod text;

pub use domain::{
    MailDomainKind, mail_domain_kind, org_domain_from_email, org_domain_from_url,
    registrable_domain, url_host,
};
pub use email::Email;
pub use linkedin::LinkedinId;
pub use name::{Generation, PersonName};
pub use org_name::OrgName;
pub use phone::{Phone, PhoneRegion};
pub use text::{MAX_INPUT_BYTES, fold};
