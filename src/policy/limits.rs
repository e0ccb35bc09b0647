//! Volume limits as pure arithmetic over counter values: which counter
//! (key, window) to bump, and what a value means. The counters themselves
//! live in the store (atomic upserts); the clock is an argument.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{DayZone, LimitsConfig};
use crate::envelope::domain_of;

/// A counter cell: key and the start of its window (epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CounterKey {
    pub key: String,
    pub window_start: i64,
}

/// Start of the fixed window of length `len` containing `now`.
pub fn window_start(now: DateTime<Utc>, len: std::time::Duration) -> i64 {
    let len = (len.as_millis() as i64).max(1);
    now.timestamp_millis().div_euclid(len) * len
}

/// Start of the local day (00:00 in `zone`) containing `now`, in UTC.
pub fn day_start(now: DateTime<Utc>, zone: DayZone) -> DateTime<Utc> {
    zone.day_start(now)
}

/// Messages sent by `account` in the current rate window.
pub fn rate_key(account: &str, limits: &LimitsConfig, now: DateTime<Utc>) -> CounterKey {
    CounterKey {
        key: format!("rate:{account}"),
        window_start: window_start(now, limits.rate_window),
    }
}

/// The set of distinct external recipients of `account` today.
pub fn external_key(account: &str, limits: &LimitsConfig, now: DateTime<Utc>) -> CounterKey {
    CounterKey {
        key: format!("ext:{account}"),
        window_start: day_start(now, limits.day_zone).timestamp_millis(),
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The spam counters to bump when a message of `account` is spam-scored:
/// one per hour window and one per day window.
pub fn spam_keys(account: &str, now: DateTime<Utc>) -> [CounterKey; 2] {
    let ms = now.timestamp_millis();
    [
        CounterKey {
            key: format!("spam_h:{account}"),
            window_start: ms.div_euclid(HOUR_MS) * HOUR_MS,
        },
        CounterKey {
            key: format!("spam_d:{account}"),
            window_start: ms.div_euclid(DAY_MS) * DAY_MS,
        },
    ]
}

/// The counter cell of message-policy refusals this hour.
pub fn refusal_key(account: &str, now: DateTime<Utc>) -> CounterKey {
    let ms = now.timestamp_millis();
    CounterKey {
        key: format!("refused_h:{account}"),
        window_start: ms.div_euclid(HOUR_MS) * HOUR_MS,
    }
}

/// The counter cells to read for [`SpamCounts`]: spam this and the
/// previous hour, this and the previous day, refusals this and the
/// previous hour.
pub fn spam_read_keys(account: &str, now: DateTime<Utc>) -> [CounterKey; 6] {
    let [h, d] = spam_keys(account, now);
    let r = refusal_key(account, now);
    [
        CounterKey {
            window_start: h.window_start - HOUR_MS,
            ..h.clone()
        },
        h,
        CounterKey {
            window_start: d.window_start - DAY_MS,
            ..d.clone()
        },
        d,
        CounterKey {
            window_start: r.window_start - HOUR_MS,
            ..r.clone()
        },
        r,
    ]
}

/// Spam counter values, read in the order of [`spam_read_keys`]. The last
/// hour/day is estimated from two fixed windows, weighting the previous one
/// by how much of it still lies within the sliding window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpamCounts {
    pub previous_hour: u64,
    pub this_hour: u64,
    pub previous_day: u64,
    pub this_day: u64,
    /// Message-policy refusals.
    #[serde(default)]
    pub refusals_previous_hour: u64,
    #[serde(default)]
    pub refusals_this_hour: u64,
}

impl SpamCounts {
    /// The values of the cells of [`spam_read_keys`], in its order.
    pub fn from_cells(cells: [u64; 6]) -> SpamCounts {
        let [previous_hour, this_hour, previous_day, this_day, refusals_previous_hour, refusals_this_hour] =
            cells;
        SpamCounts {
            previous_hour,
            this_hour,
            previous_day,
            this_day,
            refusals_previous_hour,
            refusals_this_hour,
        }
    }

    fn sliding(previous: u64, current: u64, len: i64, now: DateTime<Utc>) -> u64 {
        let into = now.timestamp_millis().rem_euclid(len);
        let weight = (len - into) as f64 / len as f64;
        current + (previous as f64 * weight).floor() as u64
    }

    pub fn last_hour(&self, now: DateTime<Utc>) -> u64 {
        Self::sliding(self.previous_hour, self.this_hour, HOUR_MS, now)
    }

    pub fn last_day(&self, now: DateTime<Utc>) -> u64 {
        Self::sliding(self.previous_day, self.this_day, DAY_MS, now)
    }

    pub fn refusals_last_hour(&self, now: DateTime<Utc>) -> u64 {
        Self::sliding(
            self.refusals_previous_hour,
            self.refusals_this_hour,
            HOUR_MS,
            now,
        )
    }
}

/// `true` when the recipient's domain is not hosted here.
pub fn is_external(rcpt: &str, limits: &LimitsConfig) -> bool {
    match domain_of(rcpt) {
        Some(domain) => !limits
            .hosted_domains
            .iter()
            .any(|h| domain == *h || domain.ends_with(&format!(".{h}"))),
        // A bare local name is delivered here.
        None => false,
    }
}

/// The account's daily budget of distinct external recipients: the
/// configured one, an override from the directory, or the lowered budget
/// of a repeat offender (whichever is smallest).
pub fn daily_budget(limits: &LimitsConfig, override_: Option<u64>, recent_offences: u64) -> u64 {
    let base = override_.unwrap_or(limits.daily_external_rcpts);
    if recent_offences >= limits.repeat_offender_after {
        base.min(limits.repeat_offender_daily)
    } else {
        base
    }
}

/// How long prison lasts from `now`.
pub fn prison_until(limits: &LimitsConfig, now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::from_std(limits.prison).unwrap_or(Duration::minutes(20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn local_day_starts_at_local_midnight() {
        let athens = DayZone::Fixed(FixedOffset::east_opt(2 * 3600).unwrap());
        // 21:59 UTC is 23:59 in +02:00: the day began at 22:00 UTC before.
        assert_eq!(
            day_start(t("2026-11-22T21:59:00Z"), athens),
            t("2026-11-21T22:00:00Z")
        );
        // 22:00 UTC is local midnight: a new day.
        assert_eq!(
            day_start(t("2026-11-22T22:00:00Z"), athens),
            t("2026-11-22T22:00:00Z")
        );
    }

    #[test]
    fn named_zone_midnight_follows_daylight_saving() {
        let rome = DayZone::parse("Europe/Rome").unwrap();
        // Winter (CET, +01:00): midnight is 23:00 UTC the day before.
        assert_eq!(
            day_start(t("2026-01-15T12:00:00Z"), rome),
            t("2026-01-14T23:00:00Z")
        );
        // Summer (CEST, +02:00): midnight is 22:00 UTC the day before.
        assert_eq!(
            day_start(t("2026-07-15T12:00:00Z"), rome),
            t("2026-07-14T22:00:00Z")
        );
        // 22:30 UTC on 2026-07-15 is already 00:30 on the 16th in Rome; a
        // fixed +01:00 would still count it as the 15th.
        assert_eq!(
            day_start(t("2026-07-15T22:30:00Z"), rome),
            t("2026-07-15T22:00:00Z")
        );
        let fixed = DayZone::parse("+01:00").unwrap();
        assert_eq!(
            day_start(t("2026-07-15T22:30:00Z"), fixed),
            t("2026-07-14T23:00:00Z")
        );
        // The day of the spring change (29 March 2026) starts at its
        // midnight, still CET.
        assert_eq!(
            day_start(t("2026-03-29T10:00:00Z"), rome),
            t("2026-03-28T23:00:00Z")
        );
    }

    #[test]
    fn midnight_skipped_by_daylight_saving_starts_at_first_local_time() {
        // Havana moves clocks forward at 00:00 (to 01:00) in March: the
        // 8 March 2026 day begins at 01:00 local (CDT, -04:00) = 05:00 UTC.
        let havana = DayZone::parse("America/Havana").unwrap();
        assert_eq!(
            day_start(t("2026-03-08T12:00:00Z"), havana),
            t("2026-03-08T05:00:00Z")
        );
    }

    #[test]
    fn zone_parse_errors_are_clear() {
        assert_eq!(DayZone::parse("UTC").unwrap(), DayZone::default());
        assert!(matches!(DayZone::parse("-05:30"), Ok(DayZone::Fixed(_))));
        let e = DayZone::parse("Europe/Atlantis").unwrap_err();
        assert!(e.contains("Europe/Rome"), "{e}");
        assert!(DayZone::parse("+25:00").is_err());
    }

    #[test]
    fn sliding_hour_weights_previous_window() {
        let c = SpamCounts {
            previous_hour: 10,
            this_hour: 2,
            ..SpamCounts::default()
        };
        assert_eq!(c.last_hour(t("2026-11-22T10:00:00Z")), 12);
        assert_eq!(c.last_hour(t("2026-11-22T10:30:00Z")), 7);
        assert_eq!(c.last_hour(t("2026-11-22T10:59:59Z")), 2);
    }

    #[test]
    fn external_means_not_hosted() {
        let limits = LimitsConfig {
            hosted_domains: vec!["example.com".into()],
            ..LimitsConfig::default()
        };
        assert!(!is_external("a@example.com", &limits));
        assert!(!is_external("a@mx.Example.com", &limits));
        assert!(is_external("a@example.org", &limits));
        assert!(!is_external("postmaster", &limits));
    }
}
