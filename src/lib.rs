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
//! | [`smtp`]    | leaf: SMTP replies and verdicts every layer may name   | anything else   |
//! | [`diag`]    | leaf: file:line diagnostics shared by every loader     | anything else   |
//! | [`envelope`]| SMTP envelope facts shared by every layer              | anything else   |
//! | [`milter`]  | milter wire codec and per-connection state machine    | rules, scoring, policy, store, http |
//! | [`server`]  | listeners, connection cap, shutdown                    | scoring         |
//! | [`pipeline`]| the glue: envelope + message → report → verdict        | sockets         |
//! | [`message`] | raw bytes → parsed message facts (never fails)         | I/O             |
//! | [`rules`]   | pure checks emitting symbols with evidence             | I/O             |
//! | [`auth`]    | SPF and DMARC policy over DNS, accounts directory      | milter, scoring |
//! | [`scoring`] | weights from `scores/`, group caps, the report type    | I/O             |
//! | [`ruleset`] | one compile step for everything an operator edits, shared behind one swap | sockets |
//! | [`store`]   | reports, account state, counters (SQLite/PostgreSQL)   | milter          |
//! | [`classifier`]| learned naive Bayes: message → spam probability, BAYES_* | weights, store |
//! | [`learn`]   | reviewer verdicts → model update, saved and swapped in | HTTP, milter    |
//! | [`http`]    | review API, pages, metrics; account actions via the policy | milter, scoring rules |
//! | [`config`]  | `outscore.toml` → validated [`config::Config`]         | sockets, policy |
//! | [`scan`]    | offline corpus scoring, summary, baseline diff         | sockets, store  |
//! | [`policy`]  | tiers, account state machine, volume limits; owns its persistence and event-sink traits | sockets, sqlx, notify |
//! | [`policy_db`]| the policy's persistence traits over the store        | milter          |
//! | [`notify`]  | outbox delivery: webhook, command, SMTP e-mail; the policy's event sink | scoring |
//! | [`telemetry`]| counters (one place for metric names)                 | accounts as labels |
//! | [`daemon`]  | composition root: `build(&Config, RuleSet)`, run, reload, stop | — |
//! | [`cli`]     | the command line, one file per command, exit codes     | —               |
//!
//! No two top-level modules import each other, directly or through others;
//! the architecture test of the integration suite enforces it.
//!
//! Only [`daemon`] and [`cli`] pick concrete implementations.

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
