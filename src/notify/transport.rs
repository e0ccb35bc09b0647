//! The three ways a notification leaves: an HTTP/1.1 POST of JSON to an
//! `http://` webhook, a command with the JSON on stdin, and an e-mail
//! through an SMTP relay. Minimal clients over tokio; each attempt is
//! bounded by the caller's timeout.
//!
//! Nothing that reaches an SMTP command line is trusted: the HELO name and
//! both addresses are checked ([`check_address`]) before a connection is
//! opened, so a value with CR or LF can never add a command or a recipient.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why one delivery attempt failed (the outbox retries).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("bad webhook URL {0:?} (want http://host[:port]/path)")]
    Url(String),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("webhook answered {status}: {line}")]
    Status { status: u16, line: String },
    #[error("malformed reply from {peer}: {line:?}")]
    Protocol { peer: &'static str, line: String },
    #[error("SMTP relay refused {stage}: {reply}")]
    Smtp { stage: &'static str, reply: String },
    #[error("command {program} exited with {status}: {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("payload: {0}")]
    Payload(String),
    #[error("{what} {value:?} is not a single valid e-mail address: {why}")]
    Address {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

impl DeliveryError {
    /// A job that can never succeed (a malformed payload or address):
    /// retrying it only repeats the failure.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DeliveryError::Payload(_) | DeliveryError::Address { .. }
        )
    }
}

/// Check that `value` is one plain ASCII mailbox, `local@domain`, fit for
/// `MAIL FROM:<…>`, `RCPT TO:<…>` and a `To:` header: no CR, LF or other
/// control character, no space, no display name, angle bracket, comma or
/// quote, exactly one `@`, and a domain of letters, digits, `-` and dots.
/// `what` names the value in the error (`recipient`, `sender`).
pub fn check_address(what: &'static str, value: &str) -> Result<(), DeliveryError> {
    let bad = |why| {
        Err(DeliveryError::Address {
            what,
            value: value.chars().take(200).collect(),
            why,
        })
    };
    if value.chars().any(|c| c.is_control()) {
        return bad("it contains CR, LF or another control character");
    }
    if !value.is_ascii() {
        return bad("non-ASCII addresses need SMTPUTF8, which the notifier does not speak");
    }
    if value.len() > 254 {
        return bad("longer than 254 characters");
    }
    if value.contains([',', ';']) {
        return bad("a list of addresses");
    }
    let Some((local, domain)) = value.split_once('@') else {
        return bad("no @");
    };
    if domain.contains('@') {
        return bad("more than one @");
    }
    if local.is_empty() || local.len() > 64 {
        return bad("the local part is empty or longer than 64 characters");
    }
    if local
        .chars()
        .any(|c| c.is_ascii_whitespace() || "<>()[]\\:\"".contains(c))
    {
        return bad("a space, bracket, quote or other special character");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return bad("a misplaced dot in the local part");
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !labels_ok {
        return bad("the domain is not a host name");
    }
    Ok(())
}

/// A HELO name: one host-name-like word, nothing a command could hide in.
fn check_helo(helo: &str) -> Result<(), DeliveryError> {
    let fine = !helo.is_empty()
        && helo.len() <= 255
        && helo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
    if fine {
        Ok(())
    } else {
        Err(DeliveryError::Payload(format!(
            "HELO name {:?} is not a host name",
            helo.chars().take(200).collect::<String>()
        )))
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> DeliveryError {
    move |source| DeliveryError::Io { what, source }
}

/// `http://host[:port]/path` → (host, port, path).
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), DeliveryError> {
    let bad = || DeliveryError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        path.to_string(),
    ))
}

/// POST `body` (JSON) to `url`; a 2xx status is success. `event_id` goes in
/// `X-Outscore-Event-Id` so a receiver can drop a repeat after a crash.
pub async fn post_json(url: &str, body: &[u8], event_id: i64) -> Result<u16, DeliveryError> {
    let (host, port, path) = parse_http_url(url)?;
    let addr = format!("{host}:{port}");
    let mut stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| DeliveryError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: outscore/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Outscore-Event-Id: {event_id}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(io("send request"))?;
    stream.write_all(body).await.map_err(io("send request"))?;
    stream.flush().await.map_err(io("send request"))?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .await
        .map_err(io("read response"))?;
    let status_line = status_line.trim_end().to_string();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| DeliveryError::Protocol {
            peer: "webhook",
            line: status_line.clone(),
        })?;
    // Drain a little of the rest so the server sees a clean close.
    let mut sink = vec![0u8; 16 * 1024];
    let _ = reader.read(&mut sink).await;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(DeliveryError::Status {
            status,
            line: status_line,
        })
    }
}

/// Run `argv` with `body` on stdin; exit status 0 is success.
pub async fn run_command(argv: &[String], body: &[u8]) -> Result<(), DeliveryError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = tokio::process::Command::new(&program)
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("spawn command"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(body).await.map_err(io("command stdin"))?;
        stdin.shutdown().await.map_err(io("command stdin"))?;
    }
    let out = child.wait_with_output().await.map_err(io("wait command"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(DeliveryError::Command {
            program,
            status: out.status.to_string(),
            stderr: stderr.chars().take(500).collect(),
        })
    }
}

/// One e-mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail<'a> {
    pub helo: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// The whole message (headers and body), lines ending in CRLF or LF.
    pub message: &'a str,
}

/// Send one message through `host:port`: EHLO (HELO if refused), MAIL,
/// RCPT, DATA with dot-stuffing, QUIT. The HELO name and both addresses are
/// checked first; a bad one fails before any connection is made.
pub async fn send_mail(host: &str, port: u16, mail: &Mail<'_>) -> Result<(), DeliveryError> {
    check_helo(mail.helo)?;
    check_address("sender", mail.from)?;
    check_address("recipient", mail.to)?;
    let addr = format!("{host}:{port}");
    let stream =
        TcpStream::connect((host, port))
            .await
            .map_err(|source| DeliveryError::Connect {
                addr: addr.clone(),
                source,
            })?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    expect(&mut read, "greeting", 2).await?;
    write
        .write_all(format!("EHLO {}\r\n", mail.helo).as_bytes())
        .await
        .map_err(io("smtp write"))?;
    if expect(&mut read, "EHLO", 2).await.is_err() {
        write
            .write_all(format!("HELO {}\r\n", mail.helo).as_bytes())
            .await
            .map_err(io("smtp write"))?;
        expect(&mut read, "HELO", 2).await?;
    }
    let steps: [(&'static str, String, u8); 3] = [
        ("MAIL FROM", format!("MAIL FROM:<{}>\r\n", mail.from), 2),
        ("RCPT TO", format!("RCPT TO:<{}>\r\n", mail.to), 2),
        ("DATA", "DATA\r\n".to_string(), 3),
    ];
    for (stage, line, class) in steps {
        write
            .write_all(line.as_bytes())
            .await
            .map_err(io("smtp write"))?;
        expect(&mut read, stage, class).await?;
    }
    let mut data = String::with_capacity(mail.message.len() + 64);
    for line in mail.message.lines() {
        // A bare CR is no line end for us but may be one for the relay.
        let line = line.replace('\r', "");
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(&line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    write
        .write_all(data.as_bytes())
        .await
        .map_err(io("smtp write"))?;
    expect(&mut read, "end of data", 2).await?;
    let _ = write.write_all(b"QUIT\r\n").await;
    let _ = expect(&mut read, "QUIT", 2).await;
    Ok(())
}

/// Read one (possibly multi-line) SMTP reply and check its first digit.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(
    read: &mut R,
    stage: &'static str,
    class: u8,
) -> Result<String, DeliveryError> {
    let mut all = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        let n = read.read_line(&mut line).await.map_err(io("smtp read"))?;
        if n == 0 {
            return Err(DeliveryError::Protocol {
                peer: "smtp relay",
                line: format!("connection closed at {stage}"),
            });
        }
        let line = line.trim_end();
        if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            return Err(DeliveryError::Protocol {
                peer: "smtp relay",
                line: line.to_string(),
            });
        }
        all.push_str(line);
        all.push('\n');
        if line.as_bytes().get(3) != Some(&b'-') {
            if line.as_bytes()[0] == b'0' + class {
                return Ok(all);
            }
            return Err(DeliveryError::Smtp {
                stage,
                reply: all.trim_end().to_string(),
            });
        }
    }
    Err(DeliveryError::Protocol {
        peer: "smtp relay",
        line: "reply of more than 100 lines".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/hook?a=1").unwrap(),
            ("127.0.0.1".into(), 8080, "/hook?a=1".into())
        );
        assert_eq!(
            parse_http_url("http://panel.example").unwrap(),
            ("panel.example".into(), 80, "/".into())
        );
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("http://:80/").is_err());
    }

    #[test]
    fn only_single_plain_addresses_pass() {
        for good in [
            "owner@contact.example",
            "first.last+tag@sub.contact-example.org",
            "o'brien@example.com",
        ] {
            assert!(check_address("recipient", good).is_ok(), "{good}");
        }
        for (bad, why) in [
            (
                "owner@contact.example\r\nRCPT TO:<x@evil.example>",
                "CR, LF",
            ),
            ("owner@contact.example\n", "CR, LF"),
            ("owner@contact.example>", "the domain"),
            ("<owner@contact.example>", "special character"),
            ("Owner <owner@contact.example>", "special character"),
            ("a@b.example, c@d.example", "a list"),
            ("a@b.example;c@d.example", "a list"),
            ("a,c@d.example", "a list"),
            ("a@b@c.example", "more than one @"),
            ("owner", "no @"),
            ("@contact.example", "local part"),
            ("owner@", "the domain"),
            ("owner@contact..example", "the domain"),
            ("me@bücher.example", "SMTPUTF8"),
            ("", "no @"),
        ] {
            let e = check_address("recipient", bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.starts_with("recipient "), "{e}");
        }
        assert!(check_helo("relay.provider.example").is_ok());
        assert!(check_helo("relay\r\nRSET").is_err());
    }
}
