//! Codec throughput: decoding the packet stream of a 5 KB message as Postfix
//! sends it, and encoding end-of-message replies.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use outscore::milter::frame::{
    decode_command, encode_command, encode_reply, Command, ConnFamily, Reply,
};

/// The packets of one transaction: MAIL, RCPT, DATA, 8 headers, EOH, a 5 KB
/// body, EOM and ABORT, each preceded by its macro packet.
fn transaction() -> BytesMut {
    let mut out = BytesMut::new();
    let m = |c: u8, pairs: &[(&str, &str)]| Command::Macro {
        for_command: c,
        pairs: pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    };
    let mut push = |c: Command| encode_command(&c, &mut out);
    push(Command::Connect {
        hostname: "client.example".into(),
        family: ConnFamily::Inet,
        port: 40000,
        address: "192.0.2.1".into(),
    });
    push(m(
        b'M',
        &[
            ("i", "4ABC"),
            ("{auth_authen}", "alice@customer.example"),
            ("{auth_type}", "PLAIN"),
        ],
    ));
    push(Command::Mail(vec![
        "<alice@customer.example>".into(),
        "SIZE=5400".into(),
    ]));
    push(m(b'R', &[("{rcpt_addr}", "bob@remote.example")]));
    push(Command::Rcpt(vec!["<bob@remote.example>".into()]));
    push(m(b'T', &[("i", "4ABC")]));
    push(Command::Data);
    for (name, value) in [
        ("From", " Alice <alice@customer.example>"),
        ("To", " bob@remote.example"),
        ("Subject", " Quarterly figures"),
        ("Message-ID", " <x@customer.example>"),
        ("Date", " Sun, 22 Nov 2026 10:00:00 +0000"),
        ("MIME-Version", " 1.0"),
        ("Content-Type", " text/plain; charset=utf-8"),
        ("X-Mailer", " Thunderbird"),
    ] {
        push(m(b'L', &[("i", "4ABC")]));
        push(Command::Header {
            name: Bytes::from(name),
            value: Bytes::from(value),
        });
    }
    push(Command::Eoh);
    push(Command::Body(Bytes::from(vec![b'x'; 5000])));
    push(Command::BodyEob(Bytes::new()));
    push(Command::Abort);
    out
}

fn bench(c: &mut Criterion) {
    let wire = transaction();
    let packets = {
        let mut b = wire.clone();
        std::iter::from_fn(|| decode_command(&mut b, 1 << 20).unwrap()).count() as u64
    };
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode_transaction_bytes", |b| {
        b.iter(|| {
            let mut buf = wire.clone();
            while let Some(cmd) = decode_command(&mut buf, 1 << 20).unwrap() {
                std::hint::black_box(cmd);
            }
        })
    });
    g.throughput(Throughput::Elements(packets));
    g.bench_function("decode_transaction_packets", |b| {
        b.iter(|| {
            let mut buf = wire.clone();
            while let Some(cmd) = decode_command(&mut buf, 1 << 20).unwrap() {
                std::hint::black_box(cmd);
            }
        })
    });
    let replies = [
        Reply::AddHeader {
            name: "X-Outscore-Score".into(),
            value: " 1.20".into(),
        },
        Reply::AddHeader {
            name: "X-Outscore-Report".into(),
            value: " SYMBOL_A(1.00), SYMBOL_B(0.20)".into(),
        },
        Reply::Accept,
    ];
    g.throughput(Throughput::Elements(replies.len() as u64));
    g.bench_function("encode_eom_replies", |b| {
        let mut out = BytesMut::with_capacity(256);
        b.iter(|| {
            out.clear();
            for r in &replies {
                encode_reply(r, &mut out);
            }
            std::hint::black_box(&out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
