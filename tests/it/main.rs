//! outscore's integration tests, in one binary (one link of sqlx, axum and
//! Hyperscan instead of one per file). Each module is one area; `support`
//! holds what they share. Run one area with e.g. `cargo test --test it http::`.

#[macro_use]
mod support;

mod architecture;
mod browser;
mod check;
mod classifier;
mod codec;
mod dashboard;
mod http;
mod identity_rules;
mod identity_spf;
mod learn;
mod milter;
mod notify;
mod policy;
mod policy_cli;
mod policy_store;
mod scan;
mod scoring;
mod scoring_corpus;
mod scoring_matchers;
mod store;
mod store_cli;
mod store_outage;
