//! Helpers shared by the integration tests: throwaway stores on SQLite and
//! PostgreSQL (with the `both_backends!` macro), router requests, trained
//! classifiers, a loopback DNS server, the shared corpus.
#![allow(dead_code)]

#[macro_use]
pub mod store;
pub mod classifier;
pub mod common;
pub mod http;
pub mod identity;
