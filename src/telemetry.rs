//! Counters. Every counter is named here, once; events log
//! their line and bump their counter together. Labels never carry accounts,
//! addresses or keywords.

use std::sync::atomic::{AtomicU64, Ordering};

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
pub static REFUSED_PEERS: Counter = Counter::new(
    "outscore_milter_refused_peers_total",
    "Milter connections closed at once: the peer is not in [milter] allow_from",
);
pub static PROTOCOL_ERRORS: Counter = Counter::new(
    "outscore_milter_protocol_errors_total",
    "Connections closed on a malformed packet or protocol error",
);

pub static HTTP_AUTH_FAILURES: Counter = Counter::new(
    "outscore_http_auth_failures_total",
    "Review API requests and logins refused for a bad credential",
);
pub static CLASSIFIER_LEARNED: Counter = Counter::new(
    "outscore_classifier_learned_total",
    "Reports the content classifier learned as spam or ham from a reviewer's verdict",
);
pub static HTTP_ACCOUNT_ACTIONS: Counter = Counter::new(
    "outscore_http_account_actions_total",
    "Account actions (unblock, suspend, lift, password reset) done through the review interface",
);

/// Every counter, for exposition.
pub fn counters() -> [&'static Counter; 8] {
    [
        &CONNECTIONS,
        &REFUSED_PEERS,
        &MESSAGES,
        &FILTER_FAILURES,
        &PROTOCOL_ERRORS,
        &HTTP_AUTH_FAILURES,
        &HTTP_ACCOUNT_ACTIONS,
        &CLASSIFIER_LEARNED,
    ]
}

/// Verdict actions counted by [`record_verdict`]; anything else is `other`.
pub const VERDICT_ACTIONS: [&str; 5] = ["accept", "reject", "tempfail", "discard", "other"];
/// Tiers counted by [`record_verdict`]; `none` without a tier, `other` for
/// an unknown name.
pub const VERDICT_TIERS: [&str; 10] = [
    "none", "L-SPAM00", "L-SPAM10", "L-SPAM11", "L-SPAM20", "L-SPAM21", "L-SPAM30", "L-SPAM31",
    "L-SPAM40", "other",
];
/// Where a refusal happened, for [`record_refusal`].
pub const REFUSAL_STAGES: [&str; 3] = ["mail", "rcpt", "eom"];
/// Why, for [`record_refusal`]; anything else is `other`.
pub const REFUSAL_REASONS: [&str; 12] = [
    "blocked",
    "prison",
    "size",
    "rate_limit",
    "too_many_recipients",
    "daily_limit",
    "sender_mismatch",
    "dangerous_attachment",
    "large_message",
    "tier",
    "spam",
    "other",
];
pub const REFUSALS_NAME: &str = "outscore_refusals_total";
pub const REFUSALS_HELP: &str =
    "Refusals by stage (mail, rcpt, eom) and reason; in observe mode, the refusals enforcement would have made";

#[allow(clippy::declare_interior_mutable_const)]
const ZERO_REASONS: [AtomicU64; REFUSAL_REASONS.len()] = [ZERO; REFUSAL_REASONS.len()];
static REFUSALS: [[AtomicU64; REFUSAL_REASONS.len()]; REFUSAL_STAGES.len()] =
    [ZERO_REASONS; REFUSAL_STAGES.len()];

/// Count one refusal (or, observed, one would-be refusal).
pub fn record_refusal(stage: &str, reason: &str) {
    let s = REFUSAL_STAGES
        .iter()
        .position(|x| *x == stage)
        .unwrap_or(REFUSAL_STAGES.len() - 1);
    let r = REFUSAL_REASONS
        .iter()
        .position(|x| *x == reason)
        .unwrap_or(REFUSAL_REASONS.len() - 1);
    REFUSALS[s][r].fetch_add(1, Ordering::Relaxed);
}

/// `(stage, reason, count)` for every non-zero cell.
pub fn refusals() -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::new();
    for (s, row) in REFUSALS.iter().enumerate() {
        for (r, n) in row.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                out.push((REFUSAL_STAGES[s], REFUSAL_REASONS[r], n));
            }
        }
    }
    out
}

/// Modes counted by [`record_verdict`]: in `observe` the action is what
/// was done (accept) and the tier what enforcement would have given.
pub const VERDICT_MODES: [&str; 2] = ["enforce", "observe"];
pub const VERDICTS_NAME: &str = "outscore_verdicts_total";
pub const VERDICTS_HELP: &str = "Scored messages by mode, action and tier";
/// Upper bounds (microseconds) of the scan latency histogram buckets.
pub const SCAN_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000, 2_000_000,
];
pub const SCAN_SECONDS_NAME: &str = "outscore_scan_seconds";
pub const SCAN_SECONDS_HELP: &str = "Time to score one message (parse and rules)";

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_ROW: [AtomicU64; VERDICT_TIERS.len()] = [ZERO; VERDICT_TIERS.len()];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_TABLE: [[AtomicU64; VERDICT_TIERS.len()]; VERDICT_ACTIONS.len()] =
    [ZERO_ROW; VERDICT_ACTIONS.len()];
static VERDICTS: [[[AtomicU64; VERDICT_TIERS.len()]; VERDICT_ACTIONS.len()]; VERDICT_MODES.len()] =
    [ZERO_TABLE; VERDICT_MODES.len()];
static SCAN_BUCKETS: [AtomicU64; SCAN_BUCKETS_US.len() + 1] = [ZERO; SCAN_BUCKETS_US.len() + 1];
static SCAN_SUM_US: AtomicU64 = AtomicU64::new(0);

/// Count one scored message by mode, action and tier, and its scan time.
pub fn record_verdict(observed: bool, action: &str, tier: Option<&str>, scan_us: u64) {
    let m = usize::from(observed);
    let a = VERDICT_ACTIONS
        .iter()
        .position(|x| *x == action)
        .unwrap_or(VERDICT_ACTIONS.len() - 1);
    let t = match tier {
        None => 0,
        Some(tier) => VERDICT_TIERS[1..VERDICT_TIERS.len() - 1]
            .iter()
            .position(|x| *x == tier)
            .map_or(VERDICT_TIERS.len() - 1, |i| i + 1),
    };
    VERDICTS[m][a][t].fetch_add(1, Ordering::Relaxed);
    let b = SCAN_BUCKETS_US
        .iter()
        .position(|le| scan_us <= *le)
        .unwrap_or(SCAN_BUCKETS_US.len());
    SCAN_BUCKETS[b].fetch_add(1, Ordering::Relaxed);
    SCAN_SUM_US.fetch_add(scan_us, Ordering::Relaxed);
}

/// `(mode, action, tier, count)` for every non-zero cell.
pub fn verdicts() -> Vec<(&'static str, &'static str, &'static str, u64)> {
    let mut out = Vec::new();
    for (m, table) in VERDICTS.iter().enumerate() {
        for (a, row) in table.iter().enumerate() {
            for (t, n) in row.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((VERDICT_MODES[m], VERDICT_ACTIONS[a], VERDICT_TIERS[t], n));
                }
            }
        }
    }
    out
}

/// Scan latency: per-bucket counts (the last is +Inf, not cumulative) and
/// the sum in microseconds.
pub fn scan_histogram() -> (Vec<u64>, u64) {
    let counts = SCAN_BUCKETS
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    (counts, SCAN_SUM_US.load(Ordering::Relaxed))
}
