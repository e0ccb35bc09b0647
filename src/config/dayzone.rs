//! The clock of the daily budget: a fixed UTC offset or a named time zone
//! (`[limits] day_timezone` / `day_utc_offset`), and where its day starts.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};

/// The clock the daily budget follows: a fixed UTC offset, or a named
/// time zone (IANA, e.g. `Europe/Rome`) whose midnight moves with daylight
/// saving time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayZone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Default for DayZone {
    fn default() -> Self {
        DayZone::Fixed(FixedOffset::east_opt(0).expect("zero offset"))
    }
}

impl DayZone {
    /// `Europe/Rome` (any IANA zone name), `UTC`, `Z`, `+02:00`, `-05:30`.
    pub fn parse(text: &str) -> Result<DayZone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(DayZone::default());
        }
        if t.starts_with(['+', '-']) {
            return parse_offset(t).map(DayZone::Fixed);
        }
        t.parse::<chrono_tz::Tz>().map(DayZone::Named).map_err(|_| {
            format!("{text:?} is neither a time zone name like Europe/Rome nor a UTC offset like +02:00")
        })
    }

    /// Start of the local day containing `now`, in UTC.
    pub fn day_start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            DayZone::Fixed(offset) => {
                local_midnight(&offset, now.with_timezone(&offset).date_naive())
            }
            DayZone::Named(tz) => local_midnight(&tz, now.with_timezone(&tz).date_naive()),
        }
    }
}

/// `+02:00`, `-05:30`, `UTC`, `Z`.
pub fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(FixedOffset::east_opt(0).expect("zero"));
    }
    let bad = || format!("{text:?} is not a UTC offset like +02:00");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if h > 14 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// The first instant of `day` in `zone`: local 00:00, or, where a
/// daylight-saving change skips midnight, the first local time that exists
/// (at most a few hours later). An ambiguous midnight takes the earlier one.
fn local_midnight<Z: TimeZone>(zone: &Z, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    (0..=4 * 60)
        .step_by(15)
        .find_map(|minutes| {
            zone.from_local_datetime(&(midnight + Duration::minutes(minutes)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        // No zone skips more than a few hours; fall back to UTC midnight.
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}
