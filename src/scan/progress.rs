//! How far a scan is, on stderr: a live bar for a person at a terminal, and a
//! plain line every few seconds for a CI log (done/total, messages per
//! second, time left), so a long run is never silent until its end.

use std::io::Write;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One line redrawn in place (a terminal).
    Bar,
    /// A new line every interval, and one at the end (a file or pipe).
    Lines(Duration),
    Off,
}

/// Progress of one run of `total` messages.
pub struct Progress<W: Write> {
    out: W,
    style: Style,
    total: usize,
    started: Instant,
    /// When the last line or bar was written; `None` before the first.
    last: Option<Instant>,
    finished: bool,
}

impl<W: Write> Progress<W> {
    pub fn new(out: W, style: Style, total: usize) -> Progress<W> {
        let now = Instant::now();
        Progress {
            out,
            style,
            total,
            started: now,
            last: None,
            finished: false,
        }
    }

    /// `done` messages are scored now.
    pub fn update(&mut self, done: usize) {
        self.update_at(done, Instant::now());
    }

    /// `done` messages are scored at `now` (a clock of the caller's).
    pub fn update_at(&mut self, done: usize, now: Instant) {
        if self.finished {
            return;
        }
        let end = done >= self.total;
        let elapsed = now.saturating_duration_since(self.started);
        let since_last = self
            .last
            .map_or(Duration::MAX, |last| now.saturating_duration_since(last));
        // Errors writing progress are not the scan's: a closed stderr only
        // loses the progress.
        let _ = match self.style {
            Style::Off => Ok(()),
            Style::Bar => {
                if end || since_last >= Duration::from_millis(100) {
                    self.last = Some(now);
                    write!(self.out, "\r{}", bar(done, self.total, elapsed))
                        .and_then(|()| if end { writeln!(self.out) } else { Ok(()) })
                        .and_then(|()| self.out.flush())
                } else {
                    Ok(())
                }
            }
            Style::Lines(every) => {
                if end {
                    writeln!(self.out, "{}", line(done, self.total, elapsed))
                } else if since_last >= every {
                    // The first line at once: the run has begun, and its size.
                    self.last = Some(now);
                    writeln!(self.out, "{}", line(done, self.total, elapsed))
                } else {
                    Ok(())
                }
            }
        };
        self.finished = end;
    }
}

fn per_second(done: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        done as f64 / secs
    } else {
        0.0
    }
}

/// Time left at the rate so far; `None` before the first message.
fn eta(done: usize, total: usize, elapsed: Duration) -> Option<Duration> {
    let rate = per_second(done, elapsed);
    (done > 0 && rate > 0.0)
        .then(|| Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate))
}

/// `42s`, `3m05s`, `1h02m`.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn percent(done: usize, total: usize) -> usize {
    (done * 100).checked_div(total).unwrap_or(100)
}

/// `scan: 1200/9240 (12%), 850 msg/s, ETA 9s`; at the end the time taken.
pub fn line(done: usize, total: usize, elapsed: Duration) -> String {
    let rate = per_second(done, elapsed);
    if done >= total {
        return format!(
            "scan: {done}/{total} (100%) in {:.1}s, {rate:.0} msg/s",
            elapsed.as_secs_f64()
        );
    }
    let eta = eta(done, total, elapsed).map_or("?".to_string(), human);
    format!(
        "scan: {done}/{total} ({}%), {rate:.0} msg/s, ETA {eta}",
        percent(done, total)
    )
}

/// `[#######.............] 1200/9240 850 msg/s ETA 9s`
pub fn bar(done: usize, total: usize, elapsed: Duration) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let eta = if done >= total {
        format!("in {}", human(elapsed))
    } else {
        format!(
            "ETA {}",
            eta(done, total, elapsed).map_or("?".to_string(), human)
        )
    };
    format!(
        "[{}{}] {done}/{total} {:.0} msg/s {eta}   ",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        per_second(done, elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_every_interval_and_once_at_the_end() {
        let mut out = Vec::new();
        let mut p = Progress::new(&mut out, Style::Lines(Duration::from_secs(5)), 100);
        let t0 = p.started;
        for (secs, done) in [
            (0, 0),
            (1, 5),
            (5, 25),
            (6, 30),
            (10, 50),
            (12, 100),
            (13, 100),
        ] {
            p.update_at(done, t0 + Duration::from_secs(secs));
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "scan: 0/100 (0%), 0 msg/s, ETA ?",
                "scan: 25/100 (25%), 5 msg/s, ETA 15s",
                "scan: 50/100 (50%), 5 msg/s, ETA 10s",
                "scan: 100/100 (100%) in 12.0s, 8 msg/s",
            ]
        );
    }

    #[test]
    fn the_bar_redraws_one_line() {
        let mut out = Vec::new();
        let mut p = Progress::new(&mut out, Style::Bar, 10);
        let t0 = p.started;
        p.update_at(5, t0 + Duration::from_secs(1));
        // Redrawn at most ten times a second.
        p.update_at(6, t0 + Duration::from_millis(1050));
        p.update_at(10, t0 + Duration::from_secs(2));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\r').count(), 2, "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.contains("5/10 5 msg/s ETA 1s"), "{text:?}");
        assert!(
            text.contains("[##############################] 10/10"),
            "{text:?}"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
        assert_eq!(
            line(0, 10, Duration::ZERO),
            "scan: 0/10 (0%), 0 msg/s, ETA ?"
        );
    }
}
