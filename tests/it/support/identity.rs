//! A real DNS server for the identity tests: Debian's dnsmasq, started per
//! test on a free loopback port with the test zone as `txt-record`,
//! `host-record` and `mx-host` lines, killed on drop. `scripts/setup`
//! installs it.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The relay's egress address in every test zone.
pub const EGRESS: &str = "192.0.2.25";
/// Its IPv6 egress address.
pub const EGRESS6: &str = "2001:db8::25";

/// SPF and DMARC records of the test zone: (name, TXT value).
pub const ZONE_TXT: &[(&str, &str)] = &[
    ("pass.test", "v=spf1 ip4:192.0.2.0/24 -all"),
    ("fail.test", "v=spf1 ip4:203.0.113.1 -all"),
    ("softfail.test", "v=spf1 ip4:203.0.113.1 ~all"),
    ("neutral.test", "v=spf1 ip4:203.0.113.1 ?all"),
    ("nospf.test", "google-site-verification=abc123"),
    ("syntax.test", "v=spf1 ip4:not-an-address -all"),
    ("two.test", "v=spf1 ip4:192.0.2.25 -all"),
    ("two.test", "v=spf1 -all"),
    ("incl.test", "v=spf1 include:_spf.incl.test -all"),
    ("_spf.incl.test", "v=spf1 include:_spf2.incl.test ~all"),
    ("_spf2.incl.test", "v=spf1 ip4:192.0.2.25 -all"),
    ("redir.test", "v=spf1 redirect=pass.test"),
    ("arec.test", "v=spf1 a:relay.arec.test -all"),
    ("mxrec.test", "v=spf1 mx -all"),
    ("six.test", "v=spf1 ip6:2001:db8::/32 -all"),
    ("exists.test", "v=spf1 exists:%{i}._ip.exists.test -all"),
    ("badinclude.test", "v=spf1 include:nothing-here.test -all"),
    (
        "many.test",
        "v=spf1 include:l1.test include:l2.test include:l3.test include:l4.test include:l5.test include:l6.test include:l7.test include:l8.test include:l9.test include:l10.test include:l11.test ip4:192.0.2.25 -all",
    ),
    ("l1.test", "v=spf1 -all"),
    ("l2.test", "v=spf1 -all"),
    ("l3.test", "v=spf1 -all"),
    ("l4.test", "v=spf1 -all"),
    ("l5.test", "v=spf1 -all"),
    ("l6.test", "v=spf1 -all"),
    ("l7.test", "v=spf1 -all"),
    ("l8.test", "v=spf1 -all"),
    ("l9.test", "v=spf1 -all"),
    ("l10.test", "v=spf1 -all"),
    ("l11.test", "v=spf1 -all"),
    // The scenario.
    ("bank.example", "v=spf1 ip4:203.0.113.0/24 -all"),
    ("customer.example", "v=spf1 ip4:192.0.2.25 -all"),
    ("_dmarc.paypal.com", "v=DMARC1; p=reject; rua=mailto:d@paypal.com"),
    ("_dmarc.bank.example", "v=DMARC1; p=quarantine"),
    ("_dmarc.customer.example", "v=DMARC1; p=reject; aspf=s"),
    ("_dmarc.orgonly.test", "v=DMARC1; p=none; sp=quarantine"),
    ("_dmarc.relaxed.test", "v=DMARC1; p=none"),
];

/// Address records: (name, IP).
pub const ZONE_HOSTS: &[(&str, &str)] = &[
    ("relay.arec.test", "192.0.2.25"),
    ("mail.mxrec.test", "192.0.2.25"),
    ("192.0.2.25._ip.exists.test", "127.0.0.2"),
];

/// MX records: (domain, exchange, preference).
pub const ZONE_MX: &[(&str, &str, u16)] = &[("mxrec.test", "mail.mxrec.test", 10)];

/// A dnsmasq instance serving [`ZONE_TXT`] on loopback.
pub struct Dns {
    child: Option<Child>,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dns {
    /// The standard zone with a 300 s TTL.
    pub fn start() -> Dns {
        Dns::start_with_ttl(300)
    }

    /// Retries on a fresh port when another process took the one picked.
    pub fn start_with_ttl(ttl: u32) -> Dns {
        for _ in 0..4 {
            if let Some(dns) = Dns::try_start(ttl) {
                return dns;
            }
        }
        Dns::try_start(ttl).expect("dnsmasq keeps exiting at start")
    }

    fn try_start(ttl: u32) -> Option<Dns> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut conf = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             no-poll\nlocal=/#/\nlocal-ttl={ttl}\npid-file=\nlog-facility=-\n"
        );
        for (name, value) in ZONE_TXT {
            conf.push_str(&format!("txt-record={name},\"{value}\"\n"));
        }
        for (name, ip) in ZONE_HOSTS {
            conf.push_str(&format!("host-record={name},{ip}\n"));
        }
        for (domain, exchange, pref) in ZONE_MX {
            conf.push_str(&format!("mx-host={domain},{exchange},{pref}\n"));
        }
        let path: PathBuf = dir.path().join("dnsmasq.conf");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("write dnsmasq.conf");
        let mut cmd = Command::new(dnsmasq_path());
        cmd.arg("--no-daemon")
            .arg(format!("--conf-file={}", path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--user=root");
        }
        let child = cmd
            .spawn()
            .expect("start dnsmasq (scripts/setup installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut dns = Dns {
            child: Some(child),
            addr,
            _dir: dir,
        };
        dns.wait_ready().then_some(dns)
    }

    /// `true` once dnsmasq accepts connections; `false` if it exited.
    fn wait_ready(&mut self) -> bool {
        for _ in 0..100 {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dnsmasq did not start listening on {}", self.addr);
    }

    /// Stop serving (the process is killed and reaped).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A DNS "server" that never answers: a bound UDP socket nobody reads and a
/// TCP listener nobody accepts on. Queries to it time out.
pub struct SilentDns {
    _udp: UdpSocket,
    _tcp: TcpListener,
    pub addr: SocketAddr,
}

impl SilentDns {
    pub fn start() -> SilentDns {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).expect("bind tcp on the same port");
        SilentDns {
            _udp: udp,
            _tcp: tcp,
            addr,
        }
    }
}

/// A loopback port with nothing listening (UDP and TCP).
pub fn dead_port() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

fn dnsmasq_path() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"] {
        let p = PathBuf::from(dir).join("dnsmasq");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("dnsmasq")
}
