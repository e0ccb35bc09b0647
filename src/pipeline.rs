//! The one path every message takes: envelope + raw message → scan report →
//! verdict (SMTP reply or headers). Implements the milter [`Filter`]; knows no
//! sockets. The same scoring runs in `outscore scan`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::info;

use crate::auth::identity::IdentityChecker;
use crate::envelope::Envelope;
use crate::milter::{Decision, EomVerdict, Filter, FilterError, HeaderEdit, Message, SmtpReply};
use crate::scoring::{Engine, ExternalSymbol, ScanReport};
use crate::store::{ReportSink, StoredReport};

/// How verdicts are dressed.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Add score and report headers to accepted mail.
    pub add_headers: bool,
    /// Header name prefix, e.g. `X-Outscore` → `X-Outscore-Score`.
    pub header_prefix: String,
}

/// The milter filter that scores every message.
pub struct Pipeline {
    engine: ArcSwap<Engine>,
    identity: Option<Arc<IdentityChecker>>,
    reports: Option<ReportSink>,
    options: PipelineOptions,
}

impl Pipeline {
    pub fn new(engine: Engine, options: PipelineOptions) -> Pipeline {
        Pipeline {
            engine: ArcSwap::from_pointee(engine),
            identity: None,
            reports: None,
            options,
        }
    }

    /// Check sender identity (SPF, alignment, login mismatch) for every message.
    pub fn with_identity(mut self, identity: Arc<IdentityChecker>) -> Pipeline {
        self.identity = Some(identity);
        self
    }

    /// Keep a report of every scored message (the writer never blocks).
    pub fn with_reports(mut self, reports: ReportSink) -> Pipeline {
        self.reports = Some(reports);
        self
    }

    /// Swap in a reloaded rule set; messages in flight finish with the old one.
    pub fn replace_engine(&self, engine: Engine) {
        self.engine.store(Arc::new(engine));
    }

    /// Decide about a scored message: refuse at `reject_score` (the
    /// sender's threshold) quoting the report id, else accept with the score
    /// headers. Pure.
    pub fn verdict_at(
        &self,
        report: &ScanReport,
        reject_score: f64,
        report_id: &str,
    ) -> EomVerdict {
        if report.score >= reject_score {
            let text = format!(
                "Message refused as spam (score {:.1}), report {report_id}",
                report.score
            );
            let reply = SmtpReply::new(550, Some("5.7.1"), &[&text])
                .expect("reply text has no line breaks");
            return EomVerdict::with_decision(Decision::Reply(reply));
        }
        let mut verdict = EomVerdict::accept();
        if self.options.add_headers {
            let prefix = &self.options.header_prefix;
            verdict.headers.push(HeaderEdit::Add {
                name: format!("{prefix}-Score"),
                // `+ 0.0` turns the empty sum (-0.0) into 0.0.
                value: format!("{:.2}", report.score + 0.0),
            });
            if !report.symbols.is_empty() {
                verdict.headers.push(HeaderEdit::Add {
                    name: format!("{prefix}-Report"),
                    value: fold(&report.symbols_line()),
                });
            }
        }
        verdict
    }
}

/// Fold a long header value at commas so no line exceeds ~78 characters.
fn fold(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    let mut line_len = 0;
    for (i, part) in value.split(", ").enumerate() {
        if i > 0 {
            if line_len + part.len() + 2 > 72 {
                out.push_str(",\n\t");
                line_len = 8;
            } else {
                out.push_str(", ");
                line_len += 2;
            }
        }
        out.push_str(part);
        line_len += part.len();
    }
    out
}

impl Filter for Pipeline {
    async fn mail(&self, _envelope: &Envelope) -> Decision {
        Decision::Continue
    }

    async fn rcpt(&self, _envelope: &Envelope, _rcpt: &str) -> Decision {
        Decision::Continue
    }

    async fn end_of_message(
        &self,
        envelope: Envelope,
        message: Message,
    ) -> Result<EomVerdict, FilterError> {
        let engine = self.engine.load_full();
        let external: Vec<ExternalSymbol> = match &self.identity {
            Some(identity) => identity
                .check(&envelope, &message.raw)
                .await
                .symbols
                .into_iter()
                .map(|s| ExternalSymbol {
                    name: s.name.to_string(),
                    factor: s.factor,
                    evidence: s.evidence,
                })
                .collect(),
            None => Vec::new(),
        };
        let report = engine.scan_with(&envelope, &message.raw, &external);
        let mut stored = StoredReport::new(envelope, report, None, "", message.raw.to_vec());
        let verdict = self.verdict_at(
            &stored.report,
            engine.reject_score_for(&stored.envelope),
            stored.id.as_str(),
        );
        stored.action = if verdict.decision.is_refusal() {
            "reject"
        } else {
            "accept"
        }
        .into();
        let reply = match &verdict.decision {
            Decision::Reply(reply) => reply.to_string(),
            _ => "-".to_string(),
        };
        let (envelope, report) = (&stored.envelope, &stored.report);
        info!(
            report_id = %stored.id,
            login = envelope.auth_login.as_deref().unwrap_or("-"),
            from = %envelope.mail_from,
            rcpts = envelope.rcpts.len(),
            size = message.size,
            score = report.score,
            symbols = %report.symbols_line(),
            refused = verdict.decision.is_refusal(),
            reply = %reply,
            local = envelope.local_submission,
            "scored"
        );
        crate::telemetry::record_verdict(
            &stored.action,
            stored.tier.as_deref(),
            report.timings.total_us,
        );
        if let Some(sink) = &self.reports {
            sink.submit(stored);
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_lines_short() {
        let long = (0..20)
            .map(|i| format!("SYMBOL_{i}(1.00)"))
            .collect::<Vec<_>>()
            .join(", ");
        let folded = fold(&long);
        assert!(folded.lines().all(|l| l.len() <= 80), "{folded}");
        assert_eq!(folded.replace(",\n\t", ", "), long);
    }
}
