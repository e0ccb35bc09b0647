//! Drives one milter connection: reads packets, feeds the [`Session`], asks
//! the [`Filter`] and writes the replies. Keeps the MTA alive with
//! SMFIR_PROGRESS while a verdict is computed, bounds the filter with a time
//! budget, contains its panics, and answers with the fail-safe verdict when
//! it cannot decide. A malformed packet closes only this connection.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::filter::{Filter, Message, Skip, SkipCause};
use super::frame::{decode_command, encode_reply, FrameError, Reply};
use super::session::{Session, SessionError, Step};
use crate::envelope::Envelope;
use crate::smtp::SmtpReply;
use crate::smtp::{Decision, EomVerdict, HeaderEdit};
use crate::telemetry;

/// What to answer when the filter cannot give a verdict in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailSafe {
    /// Accept, adding `header: skipped (<reason>)` when a header is named.
    Accept { header: Option<String> },
    /// Temporary failure; the client retries later.
    Tempfail,
}

impl FailSafe {
    /// The end-of-message verdict for a filter failure.
    pub fn verdict(&self, reason: &str) -> EomVerdict {
        match self {
            FailSafe::Accept { header } => EomVerdict {
                headers: header
                    .iter()
                    .map(|name| HeaderEdit::Add {
                        name: name.clone(),
                        value: format!("skipped ({reason})"),
                    })
                    .collect(),
                ..EomVerdict::accept()
            },
            FailSafe::Tempfail => EomVerdict::with_decision(Decision::Reply(
                SmtpReply::new(
                    451,
                    Some("4.7.1"),
                    &["Message scan unavailable, try again later"],
                )
                .expect("static reply is valid"),
            )),
        }
    }

    /// The MAIL/RCPT decision for a filter failure.
    fn decision(&self) -> Decision {
        match self.verdict("").decision {
            Decision::Accept => Decision::Continue,
            other => other,
        }
    }
}

/// How connections behave; shared by all connections of a listener.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Largest packet accepted.
    pub max_frame: usize,
    /// Message bytes kept for the filter; the rest is counted only.
    pub max_message_bytes: usize,
    /// Budget for the end-of-message verdict.
    pub scan_timeout: Duration,
    /// Budget for MAIL and RCPT decisions.
    pub command_timeout: Duration,
    /// Interval between SMFIR_PROGRESS packets while waiting for a verdict.
    pub progress_interval: Duration,
    /// Close a connection silent for this long.
    pub idle_timeout: Duration,
    pub fail_safe: FailSafe,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_frame: 2 * 1024 * 1024,
            max_message_bytes: 40 * 1024 * 1024,
            scan_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(10),
            progress_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            fail_safe: FailSafe::Accept {
                header: Some("X-Outscore-Scan".into()),
            },
        }
    }
}

/// Why a connection ended abnormally. Each is logged once by the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("malformed packet: {0}")]
    Frame(#[from] FrameError),
    #[error("protocol error: {0}")]
    Session(#[from] SessionError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection idle for {0:?}")]
    Idle(Duration),
    #[error("connection closed in the middle of a packet ({0} bytes pending)")]
    Truncated(usize),
}

/// Serve one connection until QUIT, EOF, an error, or shutdown between
/// messages. Returns how many messages were answered.
pub async fn serve_connection<S, F>(
    stream: S,
    filter: Arc<F>,
    options: Arc<SessionOptions>,
    shutdown: CancellationToken,
) -> Result<u64, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Filter,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut session = Session::new(options.max_message_bytes);
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut output = BytesMut::with_capacity(4 * 1024);
    loop {
        let command = match decode_command(&mut input, options.max_frame)? {
            Some(command) => command,
            None => {
                flush(&mut writer, &mut output).await?;
                let idle = session.envelope().is_none();
                let read = tokio::select! {
                    r = tokio::time::timeout(options.idle_timeout, reader.read_buf(&mut input)) => r,
                    _ = shutdown.cancelled(), if idle => {
                        debug!("closing idle connection for shutdown");
                        return Ok(session.messages_seen());
                    }
                };
                match read {
                    Err(_) => return Err(ConnectionError::Idle(options.idle_timeout)),
                    Ok(Ok(0)) if input.is_empty() => return Ok(session.messages_seen()),
                    Ok(Ok(0)) => return Err(ConnectionError::Truncated(input.len())),
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => return Err(e.into()),
                }
            }
        };
        match session.handle(command)? {
            Step::Reply(reply) => encode_reply(&reply, &mut output),
            Step::Nothing => {}
            Step::Close => {
                flush(&mut writer, &mut output).await?;
                return Ok(session.messages_seen());
            }
            Step::AskMail => {
                let envelope = session.envelope().expect("MAIL opened a message");
                let decided = guarded(options.command_timeout, filter.mail(envelope)).await;
                let decision = or_fail_safe(decided, "mail", &options);
                encode_reply(&session.answer(decision), &mut output);
            }
            Step::AskRcpt(rcpt) => {
                let envelope = session.envelope().expect("RCPT belongs to a message");
                let decided = guarded(options.command_timeout, filter.rcpt(envelope, &rcpt)).await;
                let decision = or_fail_safe(decided, "rcpt", &options);
                encode_reply(&session.answer(decision), &mut output);
            }
            Step::AskEom => {
                let (envelope, message) = session.take_message();
                let span = info_span!(
                    "message",
                    queue_id = envelope.queue_id.as_deref().unwrap_or("-")
                );
                let verdict = end_of_message(
                    &filter,
                    &options,
                    envelope,
                    message,
                    &mut writer,
                    &mut output,
                )
                .instrument(span)
                .await?;
                for reply in session.end_of_message(verdict) {
                    encode_reply(&reply, &mut output);
                }
                telemetry::MESSAGES.incr();
            }
        }
    }
}

/// Ask the filter for the end-of-message verdict on its own task, sending
/// PROGRESS every interval, within the scan budget. Without a verdict the
/// message gets the fail-safe one and the filter hears why
/// ([`Filter::skipped`]).
async fn end_of_message<W, F>(
    filter: &Arc<F>,
    options: &SessionOptions,
    envelope: Envelope,
    message: Message,
    writer: &mut W,
    output: &mut BytesMut,
) -> Result<EomVerdict, ConnectionError>
where
    W: AsyncWrite + Unpin,
    F: Filter,
{
    let started = Instant::now();
    let f = filter.clone();
    // Kept for Filter::skipped; the raw bytes are shared, not copied.
    let kept = (envelope.clone(), message.clone());
    let mut task =
        tokio::spawn(async move { f.end_of_message(envelope, message).await }.in_current_span());
    let deadline = tokio::time::sleep(options.scan_timeout);
    tokio::pin!(deadline);
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + options.progress_interval,
        options.progress_interval,
    );
    flush(writer, output).await?;
    let error = |detail: String| Skip {
        cause: SkipCause::Error,
        detail,
    };
    let outcome = loop {
        tokio::select! {
            // A verdict that is ready wins over a deadline that is too.
            biased;
            joined = &mut task => break match joined {
                Ok(Ok(verdict)) => Ok(verdict),
                Ok(Err(e)) => Err(error(format!("filter error: {e}"))),
                Err(e) if e.is_panic() => Err(error("filter panicked".to_string())),
                Err(e) => Err(error(format!("filter task failed: {e}"))),
            },
            _ = &mut deadline => {
                task.abort();
                break Err(Skip {
                    cause: SkipCause::Timeout,
                    detail: format!("scan exceeded {:?}", options.scan_timeout),
                });
            }
            _ = progress.tick() => {
                encode_reply(&Reply::Progress, output);
                flush(writer, output).await?;
            }
        }
    };
    match outcome {
        Ok(verdict) => {
            debug!(elapsed_us = started.elapsed().as_micros() as u64, "verdict");
            Ok(verdict)
        }
        Err(skip) => {
            telemetry::FILTER_FAILURES.incr();
            warn!(stage = "eom", reason = %skip.detail, "no verdict; using fail-safe");
            let verdict = options.fail_safe.verdict(skip.cause.as_str());
            let (envelope, message) = kept;
            let noted = std::panic::catch_unwind(AssertUnwindSafe(|| {
                filter.skipped(envelope, message, skip, &verdict)
            }));
            if noted.is_err() {
                warn!(
                    stage = "eom",
                    "the filter panicked noting a skipped message"
                );
            }
            Ok(verdict)
        }
    }
}

/// Run a MAIL/RCPT filter call within a budget, containing panics; `Err`
/// names the failure. (End-of-message runs on its own task instead, so that
/// PROGRESS keeps flowing while it computes.)
async fn guarded<T>(budget: Duration, work: impl Future<Output = T>) -> Result<T, String> {
    match tokio::time::timeout(budget, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err("filter panicked".into()),
        Err(_) => Err(format!("filter exceeded {budget:?}")),
    }
}

/// The filter's MAIL/RCPT decision, or the fail-safe one (logged and counted).
fn or_fail_safe(
    decided: Result<Decision, String>,
    stage: &str,
    options: &SessionOptions,
) -> Decision {
    decided.unwrap_or_else(|reason| {
        telemetry::FILTER_FAILURES.incr();
        warn!(stage, %reason, "filter failed; using fail-safe");
        options.fail_safe.decision()
    })
}

async fn flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    output: &mut BytesMut,
) -> std::io::Result<()> {
    if !output.is_empty() {
        writer.write_all(output).await?;
        writer.flush().await?;
        output.clear();
    }
    Ok(())
}

/// Log how a connection ended: one line, at a level that matches.
pub fn log_end(result: &Result<u64, ConnectionError>) {
    match result {
        Ok(messages) => debug!(messages, "connection closed"),
        Err(ConnectionError::Io(e)) => info!(error = %e, "connection lost"),
        Err(e @ ConnectionError::Idle(_)) => info!(error = %e, "connection closed"),
        Err(e) => {
            telemetry::PROTOCOL_ERRORS.incr();
            warn!(error = %e, "connection closed on protocol error");
        }
    }
}
