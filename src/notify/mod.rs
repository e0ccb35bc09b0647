//! Notifications: account events (password reset required, suspended,
//! unblocked) go through a persistent outbox to the provider's webhook
//! and/or command and, for suspensions, as an e-mail to the account's
//! contact. A worker delivers with retries and exponential backoff, so no
//! event is lost across restarts. Knows nothing of the milter or scoring.
//!
//! Event fields come from mail (the login, the envelope sender) and from
//! the accounts directory, so none is trusted in the e-mail: a contact that
//! is not one plain address gets no e-mail, CR/LF and other control
//! characters in the subject become spaces, and the SMTP transport checks
//! every address again before it speaks. A job that can never be delivered
//! (a bad address or payload) is given up at once, not retried.

pub mod letters;
pub mod outbox;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::NotifyConfig;
use crate::policy::store::{EventSink, EventSinkError};
use crate::policy::Event;

pub use outbox::{FileOutbox, OutboxError, OutboxItem, OutboxQueue};
pub use transport::{check_address, DeliveryError, Mail};

/// A symbol's description as a customer reads it: without the analyst's
/// pointer to a rule file, e.g. `(attachments.toml)`.
fn for_customer(description: &str) -> &str {
    match description.rsplit_once(" (") {
        Some((text, tail))
            if tail.ends_with(')') && (tail.contains(".toml") || tail.contains(".txt")) =>
        {
            text
        }
        _ => description,
    }
}

/// Fold `text` into lines of at most `width` characters; lines after the
/// first start with `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > width {
            out.push('\n');
            out.push_str(indent);
            line = indent.chars().count();
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

/// How many of the message's symbols the e-mail names.
const FOUND_SHOWN: usize = 5;

/// Turns events into outbox jobs and delivers jobs.
#[derive(Debug, Clone)]
pub struct Notifier {
    config: NotifyConfig,
    /// The operator's body template; `None`: the built-in letter of the
    /// account's language.
    template: Option<String>,
    /// Days between self-service unblocks (for the e-mail text).
    self_service_days: u32,
    /// Symbol → (description, weight), from `scores/`.
    descriptions: std::collections::HashMap<String, (String, f64)>,
}

impl Notifier {
    /// Read the e-mail template named in the configuration, if any.
    pub fn new(config: NotifyConfig, self_service_days: u32) -> Result<Notifier, std::io::Error> {
        let template = match &config.email_template {
            Some(path) => Some(std::fs::read_to_string(path)?),
            None => None,
        };
        Ok(Notifier {
            config,
            template,
            self_service_days,
            descriptions: Default::default(),
        })
    }

    /// Name what was found with these descriptions (symbol, description,
    /// weight) instead of the symbols' names.
    pub fn with_descriptions<'a>(
        mut self,
        descriptions: impl Iterator<Item = (&'a str, &'a str, f64)>,
    ) -> Notifier {
        self.descriptions = descriptions
            .map(|(name, text, weight)| (name.to_string(), (text.to_string(), weight)))
            .collect();
        self
    }

    /// The lines of `{found}`: what the message's strongest symbols mean.
    fn found(&self, event: &Event, letter: &letters::Letter) -> String {
        let lines: Vec<String> = event
            .symbols
            .iter()
            .filter_map(|name| match self.descriptions.get(name) {
                Some((text, weight)) if *weight > 0.0 && !text.is_empty() => {
                    Some(format!("  - {}", for_customer(text)))
                }
                Some(_) => None,
                None if self.descriptions.is_empty() => Some(format!("  - {name}")),
                None => None,
            })
            .take(FOUND_SHOWN)
            .collect();
        if lines.is_empty() {
            letter.nothing_named.to_string()
        } else {
            lines.join("\n")
        }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// The jobs an event makes: `(kind, payload)` for the outbox. Webhook
    /// and command get every event; suspensions also e-mail the contact.
    pub fn jobs(&self, event: &Event) -> Vec<(&'static str, serde_json::Value)> {
        let mut jobs = Vec::new();
        let json = serde_json::to_value(event).expect("events serialise");
        if self.config.webhook_url.is_some() {
            jobs.push(("webhook", json.clone()));
        }
        if self.config.command.is_some() {
            jobs.push(("command", json.clone()));
        }
        if event.kind == "suspended" && self.config.smtp_relay.is_some() {
            let contact = event.contact.as_ref().filter(|contact| {
                let checked = check_address("contact", contact);
                if let Err(e) = &checked {
                    warn!(account = %event.account, error = %e, "no suspension e-mail: the contact is unusable");
                }
                checked.is_ok()
            });
            if let Some(contact) = contact {
                let (subject, body) = self.render(event);
                jobs.push((
                    "email",
                    json!({"to": contact, "subject": subject, "body": body, "event": json}),
                ));
            }
        }
        jobs
    }

    /// Subject and body of the suspension e-mail, in the account's
    /// language: what was found, when, the report, what the code means and
    /// what to do, with the unblock step matching the account's state. The
    /// subject is one line: CR, LF and other control characters in it
    /// become spaces.
    pub fn render(&self, event: &Event) -> (String, String) {
        let letter = letters::letter(self.config.language_of(&event.account));
        let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        let how = if event.self_service {
            match event.self_service_from.filter(|from| *from > event.at) {
                Some(from) => letter.unblock_from.replace("{from}", &when(from)),
                None => letter.unblock_now.to_string(),
            }
            .replace("{days}", &self.self_service_days.to_string())
        } else {
            letter.abuse_only.to_string()
        };
        let how = wrap(&how, 72, "     ");
        let found = self.found(event, letter);
        let fill = |t: &str| {
            t.replace("{account}", &event.account)
                .replace("{tier}", event.tier.map(|t| t.as_str()).unwrap_or("-"))
                .replace("{report_id}", event.report_id.as_deref().unwrap_or("-"))
                .replace("{at}", &when(event.at))
                .replace("{reason}", &event.reason)
                .replace("{found}", &found)
                .replace("{how_to_unblock}", &how)
        };
        let subject = if self.config.email_subject == NotifyConfig::default().email_subject {
            letter.subject
        } else {
            &self.config.email_subject
        };
        (
            one_line(&fill(subject)),
            fill(self.template.as_deref().unwrap_or(letter.body)),
        )
    }

    /// Deliver one job once.
    pub async fn deliver(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
        let attempt = self.deliver_inner(item);
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Timeout(self.config.timeout)),
        }
    }

    async fn deliver_inner(&self, item: &OutboxItem) -> Result<(), DeliveryError> {
        match item.kind.as_str() {
            "webhook" => {
                let url =
                    self.config.webhook_url.as_deref().ok_or_else(|| {
                        DeliveryError::Payload("no webhook_url configured".into())
                    })?;
                let body = serde_json::to_vec(&item.payload).expect("json");
                transport::post_json(url, &body, item.id).await.map(|_| ())
            }
            "command" => {
                let argv = self
                    .config
                    .command
                    .as_deref()
                    .ok_or_else(|| DeliveryError::Payload("no command configured".into()))?;
                let body = serde_json::to_vec(&item.payload).expect("json");
                transport::run_command(argv, &body).await
            }
            "email" => {
                let relay = self
                    .config
                    .smtp_relay
                    .as_ref()
                    .ok_or_else(|| DeliveryError::Payload("no smtp_relay configured".into()))?;
                let field = |k: &str| {
                    item.payload
                        .get(k)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| DeliveryError::Payload(format!("e-mail without {k}")))
                };
                let to = field("to")?;
                let message = build_message(
                    &self.config.smtp_from,
                    to,
                    field("subject")?,
                    field("body")?,
                    item.created_at,
                    item.id,
                    &self.config.smtp_helo,
                );
                transport::send_mail(
                    &relay.host,
                    relay.port,
                    &Mail {
                        helo: &self.config.smtp_helo,
                        from: &self.config.smtp_from,
                        to,
                        message: &message,
                    },
                )
                .await
            }
            other => Err(DeliveryError::Payload(format!(
                "unknown job kind {other:?}"
            ))),
        }
    }

    /// Backoff before attempt `attempts + 1`: initial × 2^(attempts-1),
    /// capped.
    pub fn backoff(&self, attempts: i64) -> Duration {
        let exp = attempts.clamp(1, 30) as u32 - 1;
        self.config
            .retry_initial
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.config.retry_max)
    }
}

/// Put an event's jobs in the outbox and wake the worker.
pub async fn enqueue_event<Q: OutboxQueue>(
    outbox: &Q,
    notifier: &Notifier,
    wake: &Notify,
    event: &Event,
) -> Result<Vec<i64>, OutboxError> {
    let mut ids = Vec::new();
    for (kind, payload) in notifier.jobs(event) {
        ids.push(outbox.enqueue(kind, &payload, Utc::now()).await?);
    }
    wake.notify_one();
    Ok(ids)
}

/// The outbox as the policy's [`EventSink`]: each event becomes its jobs
/// (webhook, command, e-mail), queued durably, and the worker is woken.
/// The notifier (channels and e-mail template) can be swapped on reload.
pub struct EventQueue<Q> {
    pub outbox: Arc<Q>,
    notifier: arc_swap::ArcSwap<Notifier>,
    /// Wakes the notification worker ([`run_worker`]).
    pub wake: Arc<Notify>,
}

impl<Q: OutboxQueue> EventQueue<Q> {
    pub fn new(outbox: Arc<Q>, notifier: Arc<Notifier>) -> EventQueue<Q> {
        EventQueue {
            outbox,
            notifier: arc_swap::ArcSwap::new(notifier),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The notifier in force.
    pub fn notifier(&self) -> Arc<Notifier> {
        self.notifier.load_full()
    }

    /// Render the next events with `notifier` (a reloaded template).
    pub fn replace_notifier(&self, notifier: Arc<Notifier>) {
        self.notifier.store(notifier);
    }
}

impl<Q: OutboxQueue> EventSink for EventQueue<Q> {
    async fn publish(&self, event: &Event) -> Result<(), EventSinkError> {
        let notifier = self.notifier.load_full();
        enqueue_event(&*self.outbox, &notifier, &self.wake, event)
            .await
            .map(|_| ())
            .map_err(|e| EventSinkError(e.to_string()))
    }
}

/// A header value on one line: CR, LF and other control characters become
/// spaces, so a value can never start a header of its own.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A plain-text UTF-8 message with the headers a relay expects. The subject
/// is made one line; `from`, `to` and `host` must be checked addresses and
/// names ([`transport::send_mail`] refuses others before sending).
pub fn build_message(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    date: DateTime<Utc>,
    id: i64,
    host: &str,
) -> String {
    let subject = one_line(subject);
    let subject = if subject.is_ascii() {
        subject
    } else {
        format!("=?UTF-8?B?{}?=", base64(subject.as_bytes()))
    };
    let mut out = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <outscore.{id}.{}@{host}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
        date.to_rfc2822(),
        date.timestamp()
    );
    for line in body.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Worker tuning.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How often the outbox is polled when nobody wakes the worker.
    pub poll: Duration,
    /// How long a claim keeps other workers off an item.
    pub lease: Duration,
    pub batch: u32,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            poll: Duration::from_secs(5),
            lease: Duration::from_secs(120),
            batch: 32,
        }
    }
}

/// Deliver due items until `stop` is cancelled. Failed items come back
/// after their backoff; after `max_attempts` an item is given up with a
/// log line (it stays in the audit trail of the outbox).
pub async fn run_worker<Q: OutboxQueue>(
    outbox: Arc<Q>,
    notifier: Arc<Notifier>,
    wake: Arc<Notify>,
    options: WorkerOptions,
    stop: CancellationToken,
) {
    loop {
        let claimed = match outbox
            .claim_due(Utc::now(), options.lease, options.batch)
            .await
        {
            Ok(items) => items,
            Err(e) => {
                warn!(error = %e, "outbox unavailable; notifications wait");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        for item in claimed {
            match notifier.deliver(&item).await {
                Ok(()) => {
                    info!(id = item.id, kind = %item.kind, attempts = item.attempts, "notification delivered");
                    if let Err(e) = outbox.mark_delivered(item.id, Utc::now()).await {
                        warn!(id = item.id, error = %e, "delivered but not marked; it may be sent again");
                    }
                }
                Err(err) => {
                    let give_up = err.is_permanent()
                        || item.attempts >= i64::from(notifier.config.max_attempts);
                    if give_up {
                        warn!(id = item.id, kind = %item.kind, attempts = item.attempts, error = %err, "notification given up");
                        let _ = outbox.mark_delivered(item.id, Utc::now()).await;
                        continue;
                    }
                    let backoff = notifier.backoff(item.attempts);
                    warn!(id = item.id, kind = %item.kind, attempts = item.attempts, retry_in = ?backoff, error = %err, "notification failed; will retry");
                    let next = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                    if let Err(e) = outbox.mark_failed(item.id, &err.to_string(), next).await {
                        warn!(id = item.id, error = %e, "cannot record the failure");
                    }
                }
            }
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(options.poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    /// A suspension of `account` with its contact in the directory.
    fn suspended(account: &str) -> Event {
        Event {
            kind: "suspended".into(),
            account: account.into(),
            contact: Some("owner@contact.example".into()),
            tier: None,
            report_id: None,
            at: "2026-11-22T10:00:00Z".parse().unwrap(),
            reason: "r".into(),
            self_service: true,
            self_service_from: None,
            symbols: Vec::new(),
        }
    }

    /// Regression: event fields reached the Subject header
    /// unchecked, so a login with CR/LF could add headers.
    #[test]
    fn subject_values_cannot_add_headers() {
        let n = Notifier::new(NotifyConfig::default(), 90).unwrap();
        let event = suspended("x@hosted.example\r\nBcc: all@victims.example\n\rX-Evil: 1");
        let (subject, _) = n.render(&event);
        assert!(!subject.contains(['\r', '\n']), "{subject:?}");
        for subject in [subject.as_str(), "Grüße\r\nBcc: all@victims.example"] {
            let msg = build_message(
                "abuse@provider.example",
                "owner@contact.example",
                subject,
                "body",
                event.at,
                1,
                "relay.example",
            );
            let (head, _) = msg.split_once("\r\n\r\n").unwrap();
            let names: Vec<&str> = head
                .split("\r\n")
                .map(|l| l.split(':').next().unwrap())
                .collect();
            assert_eq!(
                names,
                [
                    "From",
                    "To",
                    "Subject",
                    "Date",
                    "Message-ID",
                    "MIME-Version",
                    "Content-Type",
                    "Content-Transfer-Encoding",
                    "Auto-Submitted"
                ],
                "{head}"
            );
            // No bare CR or LF inside a header either.
            assert_eq!(head.matches('\n').count(), 8, "{head:?}");
            assert_eq!(head.matches('\r').count(), 8, "{head:?}");
        }
    }

    #[test]
    fn a_contact_that_is_not_one_address_gets_no_email() {
        let n = Notifier::new(
            NotifyConfig {
                smtp_relay: Some(crate::config::SmtpRelay {
                    host: "127.0.0.1".into(),
                    port: 25,
                }),
                ..NotifyConfig::default()
            },
            90,
        )
        .unwrap();
        let mut event = suspended("x@hosted.example");
        assert_eq!(n.jobs(&event).len(), 1);
        for bad in [
            "owner@contact.example>\r\nRCPT TO:<victim@elsewhere.example",
            "owner@contact.example, victim@elsewhere.example",
            "Owner <owner@contact.example>",
        ] {
            event.contact = Some(bad.into());
            assert!(n.jobs(&event).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let n = Notifier::new(
            NotifyConfig {
                retry_initial: Duration::from_secs(30),
                retry_max: Duration::from_secs(300),
                ..NotifyConfig::default()
            },
            90,
        )
        .unwrap();
        assert_eq!(n.backoff(1), Duration::from_secs(30));
        assert_eq!(n.backoff(2), Duration::from_secs(60));
        assert_eq!(n.backoff(4), Duration::from_secs(240));
        assert_eq!(n.backoff(5), Duration::from_secs(300));
        assert_eq!(n.backoff(100), Duration::from_secs(300));
    }
}
