//! The MTA side of the protocol, for outscore's own tools: the load generator
//! and the tests talk to the daemon with it exactly as Postfix does (ABORT
//! after every message, no reply awaited for steps negotiated as no-reply).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::consts::{cmd, step};
use super::frame::{decode_reply, encode_command, Command, ConnFamily, FrameError, Reply};

/// What Postfix 3.7 offers in option negotiation (milter_protocol = 6).
pub const POSTFIX_VERSION: u32 = 6;
pub const POSTFIX_ACTIONS: u32 = 0x1FF;
pub const POSTFIX_PROTOCOL: u32 = 0x1F_FFFF;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad reply: {0}")]
    Frame(#[from] FrameError),
    #[error("milter closed the connection")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply {0:?}")]
    Unexpected(Reply),
}

/// A message to send: envelope pieces, headers and body.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// MAIL FROM argv[0] as the MTA sends it (`<a@b>`).
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// Macros sent before MAIL (`{auth_authen}` …).
    pub mail_macros: Vec<(String, String)>,
    /// Header names and values as written after `Name: `.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Replies to MAIL, then each RCPT.
    pub envelope: Vec<Reply>,
    /// Modifications and the final reply at end-of-message; empty when the
    /// message was refused before DATA.
    pub eom: Vec<Reply>,
}

impl Outcome {
    /// The final reply of the message, wherever it came.
    pub fn final_reply(&self) -> Option<&Reply> {
        self.eom
            .last()
            .or_else(|| self.envelope.iter().find(|r| !matches!(r, Reply::Continue)))
    }
}

/// A milter client over any stream.
pub struct MilterClient<S> {
    stream: S,
    input: BytesMut,
    output: BytesMut,
    /// Protocol flags the milter asked for.
    pub steps: u32,
    pub timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MilterClient<S> {
    pub fn new(stream: S) -> Self {
        MilterClient {
            stream,
            input: BytesMut::with_capacity(4096),
            output: BytesMut::with_capacity(64 * 1024),
            steps: 0,
            timeout: Duration::from_secs(30),
        }
    }

    /// Queue a command without flushing.
    pub fn queue(&mut self, command: &Command) {
        encode_command(command, &mut self.output);
    }

    /// Send queued commands.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Send raw bytes (for malformed-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.flush().await?;
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Flush and read one reply.
    pub async fn recv(&mut self) -> Result<Reply, ClientError> {
        self.flush().await?;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(reply) = decode_reply(&mut self.input, 64 * 1024 * 1024)? {
                    return Ok(reply);
                }
                if self.stream.read_buf(&mut self.input).await? == 0 {
                    return Err(ClientError::Closed);
                }
            }
        })
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Read replies until a final one (skipping PROGRESS), returning all of
    /// them except the PROGRESS packets.
    pub async fn recv_final(&mut self) -> Result<Vec<Reply>, ClientError> {
        let mut out = Vec::new();
        loop {
            let reply = self.recv().await?;
            match reply {
                Reply::Progress => continue,
                r if r.is_final() => {
                    out.push(r);
                    return Ok(out);
                }
                r => out.push(r),
            }
        }
    }

    /// Option negotiation, as Postfix opens every connection.
    pub async fn negotiate(
        &mut self,
        version: u32,
        actions: u32,
        protocol: u32,
    ) -> Result<Reply, ClientError> {
        self.queue(&Command::OptNeg {
            version,
            actions,
            protocol,
        });
        let reply = self.recv().await?;
        match &reply {
            Reply::OptNeg { protocol, .. } => self.steps = *protocol,
            other => return Err(ClientError::Unexpected(other.clone())),
        }
        Ok(reply)
    }

    fn no_reply(&self, flag: u32) -> bool {
        self.steps & flag != 0
    }

    /// Send a step and read its reply unless the milter asked for none.
    async fn step(
        &mut self,
        macro_for: u8,
        macros: Vec<(String, String)>,
        command: Command,
        nr: u32,
    ) -> Result<Option<Reply>, ClientError> {
        self.queue(&Command::Macro {
            for_command: macro_for,
            pairs: macros,
        });
        self.queue(&command);
        if nr != 0 && self.no_reply(nr) {
            return Ok(None);
        }
        Ok(Some(self.recv().await?))
    }

    /// CONNECT and HELO, as for a new SMTP session.
    pub async fn connect(
        &mut self,
        hostname: &str,
        ip: &str,
        helo: &str,
    ) -> Result<(), ClientError> {
        let family = if ip.contains(':') {
            ConnFamily::Inet6
        } else {
            ConnFamily::Inet
        };
        let connect = Command::Connect {
            hostname: hostname.into(),
            family,
            port: 40000,
            address: ip.into(),
        };
        let macros = vec![
            ("j".to_string(), "relay.test".to_string()),
            ("{daemon_name}".into(), "smtpd".into()),
        ];
        self.step(cmd::CONNECT, macros, connect, step::NR_CONN)
            .await?;
        self.step(
            cmd::HELO,
            Vec::new(),
            Command::Helo(helo.into()),
            step::NR_HELO,
        )
        .await?;
        Ok(())
    }

    /// One whole transaction as Postfix sends it, ending with ABORT.
    pub async fn send_message(&mut self, message: &Submission) -> Result<Outcome, ClientError> {
        let mut outcome = Outcome {
            envelope: Vec::new(),
            eom: Vec::new(),
        };
        let mail = self
            .step(
                cmd::MAIL,
                message.mail_macros.clone(),
                Command::Mail(vec![message.mail_from.clone()]),
                step::NR_MAIL,
            )
            .await?;
        let refused = |r: &Option<Reply>| matches!(r, Some(r) if !matches!(r, Reply::Continue));
        let stop = refused(&mail);
        outcome.envelope.extend(mail);
        if stop {
            self.queue(&Command::Abort);
            self.flush().await?;
            return Ok(outcome);
        }
        let mut accepted = 0;
        for rcpt in &message.rcpts {
            let macros = vec![(
                "{rcpt_addr}".to_string(),
                rcpt.trim_matches(['<', '>']).to_string(),
            )];
            let reply = self
                .step(
                    cmd::RCPT,
                    macros,
                    Command::Rcpt(vec![rcpt.clone()]),
                    step::NR_RCPT,
                )
                .await?;
            if !refused(&reply) {
                accepted += 1;
            }
            outcome.envelope.extend(reply);
        }
        if accepted == 0 {
            self.queue(&Command::Abort);
            self.flush().await?;
            return Ok(outcome);
        }
        let queue = vec![("i".to_string(), "4ABC123".to_string())];
        self.step(cmd::DATA, queue.clone(), Command::Data, step::NR_DATA)
            .await?;
        // Like Postfix: the space after the colon is kept only with HDR_LEADSPC.
        let space = if self.steps & step::HDR_LEADSPC != 0 {
            " "
        } else {
            ""
        };
        for (name, value) in &message.headers {
            let header = Command::Header {
                name: Bytes::copy_from_slice(name.as_bytes()),
                value: Bytes::from(format!("{space}{value}")),
            };
            self.step(cmd::HEADER, queue.clone(), header, step::NR_HDR)
                .await?;
        }
        self.step(cmd::EOH, queue.clone(), Command::Eoh, step::NR_EOH)
            .await?;
        for chunk in message.body.chunks(65535) {
            let body = Command::Body(Bytes::copy_from_slice(chunk));
            self.step(cmd::BODYEOB, queue.clone(), body, step::NR_BODY)
                .await?;
        }
        self.queue(&Command::Macro {
            for_command: cmd::BODYEOB,
            pairs: queue,
        });
        self.queue(&Command::BodyEob(Bytes::new()));
        outcome.eom = self.recv_final().await?;
        self.queue(&Command::Abort);
        self.flush().await?;
        Ok(outcome)
    }

    /// Say goodbye.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.queue(&Command::Quit);
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}
