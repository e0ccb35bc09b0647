//! The one path every message takes: envelope + raw message → identity facts
//! → one parse that both the rules and the classifier read → scan report →
//! tier and account action (through
//! the enforcer) → verdict (SMTP reply or headers) and a stored report.
//! Implements the milter [`Filter`]; knows no sockets. `outscore scan` uses
//! the same engine, classifier and verdict code.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::auth::identity::IdentityChecker;
use crate::classifier::{self, Classifier};
use crate::config::Mode;
use crate::envelope::Envelope;
use crate::milter::{Filter, FilterError, Message};
use crate::notify::EventQueue;
use crate::policy::service::{Enforcer, ServiceError};
use crate::policy::{Gate, Outgoing, Refusal, Scored};
use crate::ruleset::{RuleSet, SharedRules};
use crate::scoring::{Engine, ExternalSymbol, ScanReport};
use crate::smtp::{Decision, EomVerdict, HeaderEdit, SmtpReply};
use crate::store::{account_of, ReportSink, Store, StoredReport};

/// Account enforcement over the report store (tiers, limits, notifications).
pub type StoreEnforcer = Enforcer<Store, Store, EventQueue<Store>>;

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
    rules: SharedRules,
    identity: Option<Arc<IdentityChecker>>,
    reports: Option<ReportSink>,
    enforcer: Option<Arc<StoreEnforcer>>,
    classifier: ArcSwap<Option<Classifier>>,
    options: PipelineOptions,
}

impl Pipeline {
    /// A pipeline with its own rule set around `engine` (built-in tiers,
    /// no accounts directory); the daemon shares one with [`Pipeline::with_rules`].
    pub fn new(engine: Engine, options: PipelineOptions) -> Pipeline {
        Pipeline::with_rules(SharedRules::new(RuleSet::with_engine(engine)), options)
    }

    /// A pipeline reading the rules in force from `rules`, swapped on reload.
    pub fn with_rules(rules: SharedRules, options: PipelineOptions) -> Pipeline {
        Pipeline {
            rules,
            identity: None,
            reports: None,
            enforcer: None,
            classifier: ArcSwap::from_pointee(None),
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

    /// Enforce tiers, account state and volume limits. Without it a message
    /// at or over the reject score is refused and nothing else happens.
    pub fn with_enforcer(mut self, enforcer: Arc<StoreEnforcer>) -> Pipeline {
        self.enforcer = Some(enforcer);
        self
    }

    /// Score content with a learned model too (BAYES_SPAM / BAYES_HAM).
    pub fn with_classifier(self, classifier: Classifier) -> Pipeline {
        self.replace_classifier(classifier);
        self
    }

    /// Score a message with the rules in force and, when a model is loaded,
    /// the classifier, on one parse (CPU work: call it off the async
    /// workers). The same code scores in the daemon and in `outscore scan`.
    pub fn scan_content(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        external: &[ExternalSymbol],
    ) -> ScanReport {
        scan_content(
            &self.rules.load().engine,
            Option::as_ref(&**self.classifier.load()),
            envelope,
            raw,
            external,
        )
    }

    /// The loaded model's answer for a message; `None` without a model or
    /// while it has learned too little.
    pub fn classify(&self, raw: &[u8]) -> Option<classifier::Verdict> {
        let guard = self.classifier.load();
        Option::as_ref(&**guard)?.classify(raw)
    }

    /// Counts of the model in force, `None` without one.
    pub fn model_stats(&self) -> Option<classifier::ModelStats> {
        let guard = self.classifier.load();
        Option::as_ref(&**guard).map(|c| c.model().stats())
    }

    /// Swap in a reloaded model.
    pub fn replace_classifier(&self, classifier: Classifier) {
        self.classifier.store(Arc::new(Some(classifier)));
    }

    /// Swap in a reloaded engine; messages in flight finish with the old one.
    pub fn replace_engine(&self, engine: Engine) {
        self.rules.replace_engine(engine);
    }

    /// The identity checks, when configured.
    pub fn identity(&self) -> Option<&Arc<IdentityChecker>> {
        self.identity.as_ref()
    }

    /// The rule set this pipeline reads.
    pub fn rules(&self) -> &SharedRules {
        &self.rules
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
        self.accept(report)
    }

    /// The verdict with no account history (`outscore scan`): a message
    /// policy refuses a message under the line, else the score decides.
    /// Returns the policy that refused, if one did.
    pub fn verdict_offline(
        &self,
        report: &ScanReport,
        envelope: &Envelope,
        reject_score: f64,
        size: u64,
    ) -> (EomVerdict, Option<Refusal>) {
        let message = Outgoing {
            size,
            rcpts: envelope.rcpts.len(),
            dangerous_files: &report.message.dangerous_files,
            foreign_header_from: &[],
        };
        let account = account_of(envelope).unwrap_or_default();
        self.policy_or_score(report, &account, &message, reject_score, "-")
    }

    /// The decision with no account history: a message policy refuses a
    /// message under the line, else the score decides; with the policy the
    /// message breaks, if any.
    fn policy_or_score(
        &self,
        report: &ScanReport,
        account: &str,
        message: &Outgoing<'_>,
        reject_score: f64,
        report_id: &str,
    ) -> (EomVerdict, Option<Refusal>) {
        let refusal = self.rules.load().policy.message_refusal(account, message);
        match &refusal {
            Some(r) if report.score < reject_score => (
                EomVerdict::with_decision(Decision::Reply(r.reply.clone())),
                refusal,
            ),
            _ => (self.verdict_at(report, reject_score, report_id), refusal),
        }
    }

    /// Accept, with the score headers when configured.
    pub fn accept(&self, report: &ScanReport) -> EomVerdict {
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

/// The engine's scan with the classifier's BAYES_SPAM / BAYES_HAM computed
/// on the engine's parse and normalised text.
fn scan_content(
    engine: &Engine,
    classifier: Option<&Classifier>,
    envelope: &Envelope,
    raw: &[u8],
    external: &[ExternalSymbol],
) -> ScanReport {
    engine.scan_content(envelope, raw, external, |ctx| {
        let Some(classifier) = classifier else {
            return Vec::new();
        };
        let view = classifier::View {
            msg: ctx.msg,
            subject: &ctx.subject.text,
            body: &ctx.body.text,
        };
        classifier
            .classify_view(view)
            .iter()
            .flat_map(classifier::symbols)
            .map(|s| ExternalSymbol {
                name: s.name.to_string(),
                factor: s.factor,
                evidence: s.evidence,
            })
            .collect()
    })
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

impl Pipeline {
    /// The enforcer and the account a message is charged to, when both exist.
    fn enforced<'a>(&'a self, envelope: &Envelope) -> Option<(&'a StoreEnforcer, String)> {
        Some((self.enforcer.as_deref()?, account_of(envelope)?))
    }

    /// Decide at end of message with the account's history: the message
    /// policies, the tier, the account action and the reply. The report
    /// gets its tier and the policy that refused it.
    async fn enforce(
        &self,
        stored: &mut StoredReport,
        reject_score: f64,
        foreign_header_from: &[String],
        size: u64,
    ) -> EomVerdict {
        let dangerous_files = stored.report.message.dangerous_files.clone();
        let message = Outgoing {
            size,
            rcpts: stored.envelope.rcpts.len(),
            dangerous_files: &dangerous_files,
            foreign_header_from,
        };
        let Some((enforcer, account)) = self.enforced(&stored.envelope) else {
            return self.decide_without_history(stored, reject_score, &message);
        };
        let now = chrono::Utc::now();
        let names: Vec<&str> = stored
            .report
            .symbols
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        let scored = Scored {
            score: stored.report.score,
            reject_score,
            symbols: &names,
            refused: false,
        };
        let observe = self.observes(&stored.envelope);
        let outcome = async {
            // Fresh facts, not cached: the tier depends on the latest history.
            let mut facts = enforcer.facts(&account, now).await?;
            enforcer
                .at_eom(
                    &mut facts,
                    &scored,
                    &message,
                    stored.id.as_str(),
                    now,
                    observe,
                )
                .await
        };
        match outcome.await {
            Ok(out) => {
                if let Some(tier) = &out.tier {
                    info!(account, tier = %tier.tier, explanation = %tier.explanation, "tier decided");
                    stored.tier = Some(tier.tier.to_string());
                }
                stored.report.refusal = out.refusal.map(|r| r.as_str().to_string());
                if out.decision.is_refusal() {
                    EomVerdict::with_decision(out.decision)
                } else {
                    self.accept(&stored.report)
                }
            }
            Err(e) => {
                // Account state is out of reach: the message policies and
                // the score alone decide.
                warn!(account, error = %e, "account enforcement unavailable; deciding on the score");
                self.decide_without_history(stored, reject_score, &message)
            }
        }
    }

    /// No account history to weigh: a message policy refuses, else the
    /// score decides.
    fn decide_without_history(
        &self,
        stored: &mut StoredReport,
        reject_score: f64,
        message: &Outgoing<'_>,
    ) -> EomVerdict {
        let (verdict, refusal) = self.policy_or_score(
            &stored.report,
            stored.account.as_deref().unwrap_or(""),
            message,
            reject_score,
            stored.id.as_str(),
        );
        stored.report.refusal = refusal.map(|r| r.reason.as_str().to_string());
        verdict
    }

    /// A refusal before the message (MAIL FROM, RCPT) leaves a report
    /// without content, with its reason and reply, and moves the refusal
    /// counter; observed, it records what would have been refused.
    fn record_early(
        &self,
        envelope: &Envelope,
        stage: &'static str,
        reason: &str,
        decision: &Decision,
        observed: bool,
    ) {
        crate::telemetry::record_refusal(stage, reason);
        let Some(sink) = &self.reports else {
            return;
        };
        let report = ScanReport {
            refusal: Some(reason.to_string()),
            reply: match decision {
                Decision::Reply(r) => Some(r.to_string()),
                _ => None,
            },
            observed,
            ..ScanReport::default()
        };
        let action = if observed {
            "accept"
        } else {
            action_name(decision)
        };
        sink.submit(StoredReport::new(
            envelope.clone(),
            report,
            None,
            action,
            Vec::new(),
        ));
    }

    /// The answer at MAIL FROM or RCPT: a refusal is recorded (in observe
    /// mode as the refusal that would have been) and, observed, the
    /// message goes on.
    fn early_verdict(
        &self,
        envelope: &Envelope,
        stage: &'static str,
        reason: Option<&str>,
        decision: Decision,
        observe: bool,
    ) -> Decision {
        let Some(reason) = reason else {
            return decision;
        };
        self.record_early(envelope, stage, reason, &decision, observe);
        if observe {
            Decision::Continue
        } else {
            decision
        }
    }

    /// The account is in observe mode: decide and record, refuse nothing.
    fn observes(&self, envelope: &Envelope) -> bool {
        let account = account_of(envelope).unwrap_or_default();
        self.rules.load().policy.mode.for_account(&account) == Mode::Observe
    }

    /// A MAIL FROM the sending login may not use, when the policy refuses
    /// it for this account.
    fn mail_from_refusal(&self, envelope: &Envelope) -> Option<Refusal> {
        let sender = self.identity.as_ref()?.sender(envelope)?;
        if !sender.may_not_send_as(&envelope.mail_from) {
            return None;
        }
        self.rules
            .load()
            .policy
            .mail_from_refusal(&sender.account, &envelope.mail_from)
    }
}

/// The decision of an early gate and why it refused; when account state is
/// out of reach the message goes on (the end-of-message score still
/// decides).
fn gate_decision(
    gate: Result<Gate, ServiceError>,
    account: &str,
    step: &str,
) -> (Decision, Option<&'static str>) {
    match gate {
        Ok(gate) => {
            let reason = gate
                .decision
                .is_refusal()
                .then(|| gate.reason.map_or("other", |r| r.as_str()));
            if let Some(reason) = reason {
                info!(account, step, reason, "refused before the message");
            }
            (gate.decision, reason)
        }
        Err(e) => {
            warn!(account, step, error = %e, "account state unavailable; continuing");
            (Decision::Continue, None)
        }
    }
}

fn action_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Continue | Decision::Accept => "accept",
        Decision::Discard => "discard",
        Decision::Tempfail => "tempfail",
        Decision::Reply(r) if r.is_temporary() => "tempfail",
        Decision::Reject | Decision::Reply(_) => "reject",
    }
}

impl Filter for Pipeline {
    async fn mail(&self, envelope: &Envelope) -> Decision {
        let observe = self.observes(envelope);
        if let Some(refusal) = self.mail_from_refusal(envelope) {
            info!(
                login = envelope.auth_login.as_deref().unwrap_or("-"),
                from = %envelope.mail_from,
                reason = refusal.reason.as_str(),
                reply = %refusal.reply,
                observe,
                "{}",
                if observe { "would refuse at MAIL FROM (observe mode)" } else { "refused at MAIL FROM" }
            );
            let decision = Decision::Reply(refusal.reply);
            self.record_early(
                envelope,
                "mail",
                refusal.reason.as_str(),
                &decision,
                observe,
            );
            if !observe {
                return decision;
            }
        }
        let Some((enforcer, account)) = self.enforced(envelope) else {
            return Decision::Continue;
        };
        let now = chrono::Utc::now();
        let gate = async {
            let mut facts = enforcer.facts_cached(&account, now).await?;
            enforcer
                .at_mail(&mut facts, envelope.declared_size(), now, observe)
                .await
        };
        let (decision, reason) = gate_decision(gate.await, &account, "MAIL FROM");
        self.early_verdict(envelope, "mail", reason, decision, observe)
    }

    async fn rcpt(&self, envelope: &Envelope, rcpt: &str) -> Decision {
        let observe = self.observes(envelope);
        let Some((enforcer, account)) = self.enforced(envelope) else {
            return Decision::Continue;
        };
        let now = chrono::Utc::now();
        // The session has already appended this recipient.
        let accepted_so_far = envelope.rcpts.len().saturating_sub(1);
        let gate = async {
            let mut facts = enforcer.facts_cached(&account, now).await?;
            enforcer
                .at_rcpt(&mut facts, accepted_so_far, rcpt, now, observe)
                .await
        };
        let (decision, reason) = gate_decision(gate.await, &account, "RCPT");
        self.early_verdict(envelope, "rcpt", reason, decision, observe)
    }

    async fn end_of_message(
        &self,
        envelope: Envelope,
        message: Message,
    ) -> Result<EomVerdict, FilterError> {
        let engine = self.rules.load().engine.clone();
        let (external, foreign_header_from): (Vec<ExternalSymbol>, Vec<String>) =
            match &self.identity {
                Some(identity) => {
                    let outcome = identity.check(&envelope, &message.raw).await;
                    let foreign = outcome.foreign_header_from();
                    let symbols = outcome
                        .symbols
                        .into_iter()
                        .map(|s| ExternalSymbol {
                            name: s.name.to_string(),
                            factor: s.factor,
                            evidence: s.evidence,
                        })
                        .collect();
                    (symbols, foreign)
                }
                None => (Vec::new(), Vec::new()),
            };
        let reject_score = engine.reject_score_for(&envelope);
        // Parsing, classifier and rules are CPU work: off the async workers,
        // so a huge message never stalls other connections' replies.
        let classifier = self.classifier.load_full();
        let (raw, scanned_envelope) = (message.raw.clone(), envelope.clone());
        let report = tokio::task::spawn_blocking(move || {
            scan_content(
                &engine,
                Option::as_ref(&*classifier),
                &scanned_envelope,
                &raw,
                &external,
            )
        })
        .await
        .map_err(|e| FilterError(format!("scan failed: {e}")))?;
        let mut stored = StoredReport::new(envelope, report, None, "", message.raw.to_vec());
        let verdict = self
            .enforce(
                &mut stored,
                reject_score,
                &foreign_header_from,
                message.size,
            )
            .await;
        if let Decision::Reply(reply) = &verdict.decision {
            stored.report.reply = Some(reply.to_string());
        }
        if stored.report.reply.is_some() {
            let reason = match (&stored.tier, &stored.report.refusal) {
                (Some(_), _) => "tier",
                (None, Some(r)) => r.as_str(),
                (None, None) => "spam",
            };
            crate::telemetry::record_refusal("eom", reason);
        }
        let verdict = if self.observes(&stored.envelope) {
            // Record what enforcement would have done; deliver.
            stored.report.observed = true;
            self.accept(&stored.report)
        } else {
            verdict
        };
        stored.action = action_name(&verdict.decision).into();
        let reply = stored.report.reply.as_deref().unwrap_or("-");
        let (envelope, report) = (&stored.envelope, &stored.report);
        info!(
            report_id = %stored.id,
            login = envelope.auth_login.as_deref().unwrap_or("-"),
            from = %envelope.mail_from,
            rcpts = envelope.rcpts.len(),
            size = message.size,
            score = report.score,
            tier = stored.tier.as_deref().unwrap_or("-"),
            symbols = %report.symbols_line(),
            refused = verdict.decision.is_refusal(),
            refusal = report.refusal.as_deref().unwrap_or("-"),
            observed = report.observed,
            reply = %reply,
            local = envelope.local_submission,
            "scored"
        );
        crate::telemetry::record_verdict(
            report.observed,
            &stored.action,
            stored.tier.as_deref(),
            report.timings.total_us,
        );
        if let Some(sink) = &self.reports {
            sink.submit(stored);
        }
        Ok(verdict)
    }

    /// A message the fail-safe let through (or deferred) unscored still
    /// leaves a report: no symbols, the fail-safe's action, and why the scan
    /// was skipped, so the review pages show what passed unjudged.
    fn skipped(
        &self,
        envelope: Envelope,
        message: Message,
        skip: crate::milter::Skip,
        verdict: &EomVerdict,
    ) {
        let report = ScanReport {
            message: crate::scoring::MessageSummary {
                size: message.size,
                ..Default::default()
            },
            skipped: Some(crate::scoring::ScanSkipped {
                cause: skip.cause.as_str().to_string(),
                detail: skip.detail,
            }),
            ..ScanReport::default()
        };
        let action = action_name(&verdict.decision);
        let stored = StoredReport::new(envelope, report, None, action, message.raw.to_vec());
        info!(
            report_id = %stored.id,
            login = stored.envelope.auth_login.as_deref().unwrap_or("-"),
            from = %stored.envelope.mail_from,
            size = message.size,
            action,
            cause = skip.cause.as_str(),
            "not scored; fail-safe verdict recorded"
        );
        if let Some(sink) = &self.reports {
            sink.submit(stored);
        }
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
