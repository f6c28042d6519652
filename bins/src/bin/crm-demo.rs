//! `crm-demo`: a synthetic CRM and the whole pipeline on embedded defaults.
fn main() {}
