//! The Sendmail milter protocol (versions 2–6, as Postfix speaks it), on the
//! milter side: the wire codec ([`frame`]), the
//! per-connection state machine ([`session`]) and the task that drives a
//! connection ([`connection`]). Decisions come from a [`Filter`]; this module
//! knows nothing of rules, scoring or storage.

pub mod address;
pub mod client;
pub mod connection;
pub mod consts;
pub mod filter;
pub mod frame;
pub mod session;

pub use address::ListenAddr;
pub use connection::{serve_connection, ConnectionError, FailSafe, SessionOptions};
pub use filter::{Filter, FilterError, Message, Skip, SkipCause};
pub use frame::{Command, Reply};
