//! Listen addresses in Postfix's milter syntax: `inet:host:port`,
//! `inet:[v6]:port`, `inet6:host:port`, `unix:/path` (also `local:/path`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a listen address ({reason}); use inet:127.0.0.1:7522 or unix:/run/outscore/milter.sock")]
pub struct AddrError {
    text: String,
    reason: &'static str,
}

impl FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrError {
            text: text.to_string(),
            reason,
        };
        let (kind, rest) = text
            .split_once(':')
            .ok_or(err("no inet: or unix: prefix"))?;
        match kind {
            "unix" | "local" => {
                if rest.is_empty() {
                    return Err(err("empty socket path"));
                }
                Ok(ListenAddr::Unix(PathBuf::from(rest)))
            }
            "inet" | "inet6" => {
                let (host, port) = rest.rsplit_once(':').ok_or(err("no port"))?;
                let port: u16 = port.parse().map_err(|_| err("bad port"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let host = match host {
                    "" | "*" => "0.0.0.0",
                    "localhost" => "127.0.0.1",
                    h => h,
                };
                let ip = host
                    .parse()
                    .map_err(|_| err("host must be an IP address"))?;
                Ok(ListenAddr::Tcp(SocketAddr::new(ip, port)))
            }
            _ => Err(err("unknown prefix")),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(SocketAddr::V4(a)) => write!(f, "inet:{}:{}", a.ip(), a.port()),
            ListenAddr::Tcp(SocketAddr::V6(a)) => write!(f, "inet:[{}]:{}", a.ip(), a.port()),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_forms() {
        let cases = [
            ("inet:127.0.0.1:7522", "inet:127.0.0.1:7522"),
            ("inet:localhost:10", "inet:127.0.0.1:10"),
            ("inet:[::1]:7522", "inet:[::1]:7522"),
            ("inet6:[::1]:25", "inet:[::1]:25"),
            (
                "unix:/run/outscore/milter.sock",
                "unix:/run/outscore/milter.sock",
            ),
            ("local:/tmp/m.sock", "unix:/tmp/m.sock"),
        ];
        for (input, shown) in cases {
            let a: ListenAddr = input.parse().unwrap();
            assert_eq!(a.to_string(), shown, "{input}");
        }
        for bad in [
            "127.0.0.1:10",
            "inet:host.example:10",
            "inet:1.2.3.4",
            "unix:",
            "tcp:1.2.3.4:5",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }
}
