//! Golden and round-trip tests of the milter codec: every SMFIC_* command and
//! every SMFIR_* reply has its exact wire bytes in `tests/golden/frames/`.
//! On a mismatch the bytes produced are written beside the golden file as
//! `*.actual`; `UPDATE_GOLDEN=1` rewrites the golden files.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use outscore::milter::frame::{
    decode_command, decode_reply, encode_command, encode_reply, Command, ConnFamily, FrameError,
    Reply,
};

fn commands() -> Vec<(&'static str, Command)> {
    vec![
        (
            "cmd_optneg",
            Command::OptNeg {
                version: 6,
                actions: 0x1FF,
                protocol: 0x1F_FFFF,
            },
        ),
        (
            "cmd_macro_connect",
            Command::Macro {
                for_command: b'C',
                pairs: vec![
                    ("j".into(), "relay.test".into()),
                    ("{daemon_name}".into(), "smtpd".into()),
                ],
            },
        ),
        (
            "cmd_macro_empty",
            Command::Macro {
                for_command: b'H',
                pairs: vec![],
            },
        ),
        (
            "cmd_connect_inet",
            Command::Connect {
                hostname: "client.example".into(),
                family: ConnFamily::Inet,
                port: 40123,
                address: "192.0.2.1".into(),
            },
        ),
        (
            "cmd_connect_inet6",
            Command::Connect {
                hostname: "[2001:db8::1]".into(),
                family: ConnFamily::Inet6,
                port: 25,
                address: "2001:db8::1".into(),
            },
        ),
        (
            "cmd_connect_unix",
            Command::Connect {
                hostname: "localhost".into(),
                family: ConnFamily::Unix,
                port: 0,
                address: "/run/sock".into(),
            },
        ),
        (
            "cmd_connect_unknown",
            Command::Connect {
                hostname: "unknown".into(),
                family: ConnFamily::Unknown,
                port: 0,
                address: String::new(),
            },
        ),
        ("cmd_helo", Command::Helo("client.example".into())),
        (
            "cmd_mail",
            Command::Mail(vec![
                "<alice@customer.example>".into(),
                "SIZE=1024".into(),
                "BODY=8BITMIME".into(),
            ]),
        ),
        (
            "cmd_mail_sendmail",
            Command::Mail(vec!["www-data@web.example".into()]),
        ),
        (
            "cmd_rcpt",
            Command::Rcpt(vec!["<bob@remote.example>".into()]),
        ),
        ("cmd_data", Command::Data),
        (
            "cmd_header",
            Command::Header {
                name: Bytes::from_static(b"Subject"),
                value: Bytes::from_static(b" hello\n\tworld"),
            },
        ),
        (
            "cmd_header_8bit",
            Command::Header {
                name: Bytes::from_static(b"Subject"),
                value: Bytes::from_static(b" caf\xe9"),
            },
        ),
        ("cmd_eoh", Command::Eoh),
        (
            "cmd_body",
            Command::Body(Bytes::from_static(b"line 1\r\nline 2\r\n")),
        ),
        ("cmd_bodyeob", Command::BodyEob(Bytes::new())),
        ("cmd_abort", Command::Abort),
        ("cmd_quit", Command::Quit),
        ("cmd_quit_nc", Command::QuitNc),
        ("cmd_unknown", Command::Unknown("XFOO bar".into())),
    ]
}

fn replies() -> Vec<(&'static str, Reply)> {
    vec![
        (
            "reply_optneg",
            Reply::OptNeg {
                version: 6,
                actions: 0x131,
                protocol: 0x1000,
                macros: vec![],
            },
        ),
        (
            "reply_optneg_symlist",
            Reply::OptNeg {
                version: 6,
                actions: 0x131,
                protocol: 0x1FF400,
                macros: vec![(0, "j {client_addr}".into()), (2, "i {auth_authen}".into())],
            },
        ),
        ("reply_continue", Reply::Continue),
        ("reply_accept", Reply::Accept),
        ("reply_reject", Reply::Reject),
        ("reply_tempfail", Reply::Tempfail),
        ("reply_discard", Reply::Discard),
        (
            "reply_replycode",
            Reply::ReplyCode("550 5.7.1 L-SPAM20 outbound spam blocked, report 7f3a9c".into()),
        ),
        (
            "reply_replycode_multiline",
            Reply::ReplyCode("451-4.7.1 one\r\n451 4.7.1 two".into()),
        ),
        ("reply_skip", Reply::Skip),
        ("reply_progress", Reply::Progress),
        ("reply_shutdown", Reply::Shutdown),
        ("reply_connfail", Reply::ConnFail),
        (
            "reply_quarantine",
            Reply::Quarantine("outbound spam".into()),
        ),
        (
            "reply_addheader",
            Reply::AddHeader {
                name: "X-Outscore-Score".into(),
                value: " 3.20".into(),
            },
        ),
        (
            "reply_insheader",
            Reply::InsHeader {
                index: 0,
                name: "X-First".into(),
                value: " yes".into(),
            },
        ),
        (
            "reply_chgheader",
            Reply::ChgHeader {
                index: 1,
                name: "Subject".into(),
                value: " new".into(),
            },
        ),
        (
            "reply_chgheader_delete",
            Reply::ChgHeader {
                index: 2,
                name: "X-Old".into(),
                value: String::new(),
            },
        ),
        (
            "reply_chgfrom",
            Reply::ChgFrom {
                sender: "<a@b.example>".into(),
                args: Some("RET=HDRS".into()),
            },
        ),
        (
            "reply_chgfrom_noargs",
            Reply::ChgFrom {
                sender: "<a@b.example>".into(),
                args: None,
            },
        ),
        ("reply_addrcpt", Reply::AddRcpt("<c@d.example>".into())),
        (
            "reply_addrcpt_par",
            Reply::AddRcptPar {
                rcpt: "<c@d.example>".into(),
                args: Some("NOTIFY=NEVER".into()),
            },
        ),
        ("reply_delrcpt", Reply::DelRcpt("<c@d.example>".into())),
        (
            "reply_replbody",
            Reply::ReplBody(Bytes::from_static(b"new body\r\n")),
        ),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/frames")
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes.chunks(16).map(|c| hex::encode(c) + "\n").collect()
}

/// Compare with the golden file; return the mismatch, if any.
fn check_golden(name: &str, bytes: &[u8]) -> Option<String> {
    let path = golden_dir().join(format!("{name}.hex"));
    let actual = hex_lines(bytes);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        None
    } else {
        std::fs::write(path.with_extension("hex.actual"), &actual).unwrap();
        Some(format!("{name}: bytes differ from {}", path.display()))
    }
}

#[test]
fn every_command_matches_its_golden_bytes_and_decodes_back() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, command) in commands() {
        let mut buf = BytesMut::new();
        encode_command(&command, &mut buf);
        failures.extend(check_golden(name, &buf));
        let decoded = decode_command(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(decoded, command, "{name}");
        assert!(buf.is_empty(), "{name}: bytes left over");
        ran += 1;
    }
    assert_eq!(ran, 21);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_reply_matches_its_golden_bytes_and_decodes_back() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, reply) in replies() {
        let mut buf = BytesMut::new();
        encode_reply(&reply, &mut buf);
        failures.extend(check_golden(name, &buf));
        let decoded = decode_reply(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(decoded, reply, "{name}");
        ran += 1;
    }
    assert_eq!(ran, 24);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn postfix_wire_bytes_decode() {
    // OPTNEG as Postfix 3.7.11 sends it, and an empty HELO macro packet.
    let mut buf = BytesMut::from(
        &b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff\x00\x00\x00\x02DH"[..],
    );
    assert_eq!(
        decode_command(&mut buf, 65536).unwrap(),
        Some(Command::OptNeg {
            version: 6,
            actions: 0x1FF,
            protocol: 0x1F_FFFF
        })
    );
    assert_eq!(
        decode_command(&mut buf, 65536).unwrap(),
        Some(Command::Macro {
            for_command: b'H',
            pairs: vec![]
        })
    );
    // A MAIL with no arguments at all (sendmail(1) can do that).
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x01M"[..]);
    assert_eq!(
        decode_command(&mut buf, 65536).unwrap(),
        Some(Command::Mail(vec![]))
    );
}

#[test]
fn incomplete_is_distinct_from_invalid() {
    let mut full = BytesMut::new();
    encode_command(&Command::Helo("client.example".into()), &mut full);
    for cut in 0..full.len() {
        let mut part = BytesMut::from(&full[..cut]);
        assert_eq!(decode_command(&mut part, 65536), Ok(None), "cut at {cut}");
    }
    let mut huge = BytesMut::from(&b"\x01\x00\x00\x00L"[..]);
    assert_eq!(
        decode_command(&mut huge, 65536),
        Err(FrameError::TooLarge {
            len: 0x0100_0000,
            max: 65536
        })
    );
    assert!(
        huge.capacity() < 0x0100_0000,
        "nothing reserved for an oversized packet"
    );
    let mut zero = BytesMut::from(&b"\x00\x00\x00\x00"[..]);
    assert_eq!(decode_command(&mut zero, 65536), Err(FrameError::Empty));
    let mut bad = BytesMut::from(&b"\x00\x00\x00\x01Z"[..]);
    assert_eq!(
        decode_command(&mut bad, 65536),
        Err(FrameError::UnknownCommand(b'Z'))
    );
}

fn arb_string() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(version, actions, protocol)| {
            Command::OptNeg {
                version,
                actions,
                protocol,
            }
        }),
        (
            prop::sample::select(b"CHMRTLNBE".to_vec()),
            prop::collection::vec(
                (
                    arb_string().prop_filter("name", |s| !s.is_empty()),
                    arb_string()
                ),
                0..5
            )
        )
            .prop_map(|(for_command, pairs)| Command::Macro { for_command, pairs }),
        (arb_string(), any::<u16>(), arb_string()).prop_map(|(hostname, port, address)| {
            Command::Connect {
                hostname,
                family: ConnFamily::Inet,
                port,
                address,
            }
        }),
        arb_string().prop_map(Command::Helo),
        prop::collection::vec(arb_string().prop_filter("arg", |s| !s.is_empty()), 1..4)
            .prop_map(Command::Mail),
        prop::collection::vec(arb_string().prop_filter("arg", |s| !s.is_empty()), 1..4)
            .prop_map(Command::Rcpt),
        (
            prop::collection::vec(1u8..=255, 0..30),
            prop::collection::vec(1u8..=255, 0..200)
        )
            .prop_map(|(n, v)| Command::Header {
                name: Bytes::from(n),
                value: Bytes::from(v)
            }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Command::Body(Bytes::from(b))),
        Just(Command::Eoh),
        Just(Command::Abort),
        Just(Command::Data),
    ]
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        arb_string().prop_map(Reply::ReplyCode),
        arb_string().prop_map(Reply::Quarantine),
        (arb_string(), arb_string()).prop_map(|(name, value)| Reply::AddHeader { name, value }),
        (any::<u32>(), arb_string(), arb_string())
            .prop_map(|(index, name, value)| Reply::ChgHeader { index, name, value }),
        (any::<u32>(), arb_string(), arb_string())
            .prop_map(|(index, name, value)| Reply::InsHeader { index, name, value }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Reply::ReplBody(Bytes::from(b))),
        Just(Reply::Progress),
        Just(Reply::Accept),
    ]
}

proptest! {
    #[test]
    fn commands_round_trip_even_when_split(cmds in prop::collection::vec(arb_command(), 1..8), split in 1usize..64) {
        let mut wire = BytesMut::new();
        for c in &cmds {
            encode_command(c, &mut wire);
        }
        // Feed the bytes in pieces, as a socket would.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(split) {
            buf.extend_from_slice(piece);
            while let Some(c) = decode_command(&mut buf, 1 << 20).unwrap() {
                out.push(c);
            }
        }
        prop_assert_eq!(out, cmds);
    }

    #[test]
    fn replies_round_trip(r in arb_reply()) {
        let mut wire = BytesMut::new();
        encode_reply(&r, &mut wire);
        prop_assert_eq!(decode_reply(&mut wire, 1 << 20).unwrap(), Some(r));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_command(&mut buf, 4096) {}
    }
}
