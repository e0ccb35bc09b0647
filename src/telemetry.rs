//! Counters and log set-up. Every counter is named here, once; events log
//! their line and bump their counter together. Labels never carry accounts,
//! addresses or keywords.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{LogConfig, LogFormat};

/// A monotonically increasing counter.
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter {
            name,
            help,
            value: AtomicU64::new(0),
        }
    }

    pub fn incr(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static CONNECTIONS: Counter = Counter::new(
    "outscore_milter_connections_total",
    "Milter connections accepted",
);
pub static MESSAGES: Counter = Counter::new(
    "outscore_milter_messages_total",
    "Messages that reached a verdict",
);
pub static FILTER_FAILURES: Counter = Counter::new(
    "outscore_filter_failures_total",
    "Verdicts replaced by the fail-safe (timeout, error, panic)",
);
pub static PROTOCOL_ERRORS: Counter = Counter::new(
    "outscore_milter_protocol_errors_total",
    "Connections closed on a malformed packet or protocol error",
);

pub static HTTP_AUTH_FAILURES: Counter = Counter::new(
    "outscore_http_auth_failures_total",
    "Review API requests and logins refused for a bad credential",
);
pub static HTTP_ACCOUNT_ACTIONS: Counter = Counter::new(
    "outscore_http_account_actions_total",
    "Account actions (unblock, suspend, lift, password reset) done through the review interface",
);

/// Every counter, for exposition.
pub fn counters() -> [&'static Counter; 6] {
    [
        &CONNECTIONS,
        &MESSAGES,
        &FILTER_FAILURES,
        &PROTOCOL_ERRORS,
        &HTTP_AUTH_FAILURES,
        &HTTP_ACCOUNT_ACTIONS,
    ]
}

/// Install the global tracing subscriber. `RUST_LOG` overrides the level.
pub fn init_logging(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
