//! outscore — an outbound spam-scoring milter for shared SMTP relays.
//!
//! Postfix hands every message a customer sends to outscore over the Sendmail
//! milter protocol. outscore scores it Rspamd-style (named symbols with weights
//! that add up to a score), maps score and account history to an L-SPAM tier,
//! acts on the sending account and keeps a report for the abuse team.
//!
//! # Architecture
//!
//! ```text
//! Postfix ──milter──▶ milter::session ──Envelope + raw message──▶ pipeline
//!                                                                   │
//!   auth (SPF, identity) ─▶ external symbols ──────────────────────▶│
//!        message::parse ─▶ rules + classifier ─▶ scoring (weights, caps) ─▶ ScanReport
//!                                                                   │
//!                   policy (tier + account history, limits) ◀───────┤
//!                              verdict (SMTP reply / headers) ◀─────┤
//!                              store (report, 72 h) ◀───────────────┘
//! ```
//!
//! | module      | job                                                    | must not know   |
//! |-------------|--------------------------------------------------------|-----------------|
//! | [`envelope`]| SMTP envelope facts shared by every layer              | anything else   |
//! | [`milter`]  | milter wire codec and per-connection state machine    | rules, scoring, store |
//! | [`server`]  | listeners, connection cap, shutdown, reload            | scoring         |
//! | [`pipeline`]| the glue: envelope + message → report → verdict        | sockets         |
//! | [`message`] | raw bytes → parsed message facts (never fails)         | I/O             |
//! | [`rules`]   | pure checks emitting symbols with evidence             | I/O             |
//! | [`auth`]    | SPF and DMARC policy over DNS, accounts directory      | milter, scoring |
//! | [`scoring`] | weights from `scores/`, group caps, the report type    | I/O             |
//! | [`store`]   | reports, account state, counters (SQLite/PostgreSQL)   | milter          |
//! | [`classifier`]| learned naive Bayes: message → spam probability, BAYES_* | weights, store |
//! | [`learn`]   | reviewer verdicts → model update, saved and swapped in | HTTP, milter    |
//! | [`http`]    | review API, pages, metrics; account actions via the policy | milter, scoring rules |
//! | [`config`]  | `outscore.toml` → validated [`config::Config`]         | sockets         |
//! | [`scan`]    | offline corpus scoring, summary, baseline diff         | sockets, store  |
//! | [`policy`]  | tiers, account state machine, volume limits (pure)     | sockets, sqlx   |
//! | [`policy_db`]| the policy's persistence traits over the store        | milter          |
//! | [`notify`]  | outbox delivery: webhook, command, SMTP e-mail         | scoring         |
//! | [`telemetry`]| counters (one place for metric names) and log set-up  | accounts as labels |
//!
//! Only `main.rs` picks concrete implementations.

pub mod auth;
pub mod classifier;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod envelope;
pub mod http;
pub mod learn;
pub mod message;
pub mod milter;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod policy_db;
pub mod rules;
pub mod ruleset;
pub mod scan;
pub mod scoring;
pub mod server;
pub mod smtp;
pub mod store;
pub mod telemetry;
