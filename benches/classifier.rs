//! Classifier cost per 5 KB message: parse + classify; classify a parsed
//! message (normalising its text); classify a parsed message whose text the
//! rules have already normalised (what the pipeline adds, since it parses and
//! normalises once); and the parse alone.
//! Uses the shipped default model when present, else a model trained on
//! synthetic mail with the same table size.
//!
//! Time is the benchmark thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so a
//! loaded shared machine does not inflate the numbers with time spent
//! waiting for a core.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use outscore::classifier::{Classifier, Model, View};

const WORDS: &[&str] = &[
    "account",
    "verify",
    "password",
    "invoice",
    "meeting",
    "shipment",
    "tracking",
    "offer",
    "discount",
    "bonus",
    "reply",
    "attached",
    "payment",
    "confirm",
    "delivery",
    "schedule",
    "security",
    "update",
    "customer",
    "service",
    "please",
    "thanks",
    "regards",
    "today",
    "tomorrow",
    "report",
    "order",
    "number",
    "click",
    "link",
    "login",
    "bank",
    "résumé",
    "Größe",
    "préstamo",
    "offerta",
    "προσφορά",
    "скидка",
];

/// A multipart/alternative message of about 5 KB: 3 KB text, its HTML twin.
fn message_5k(seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut text = String::new();
    while text.len() < 2_300 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        text.push_str(WORDS[(x >> 33) as usize % WORDS.len()]);
        text.push(if (x >> 20).is_multiple_of(11) {
            '.'
        } else {
            ' '
        });
    }
    text.push_str(" 请点击链接确认您的账户信息 https://secure-login.example.com/verify?id=42 ");
    let html = format!(
        "<html><body><p>{}</p><a href=\"https://secure-login.example.com/x\">here</a></body></html>",
        text.replace(". ", ".</p><p>")
    );
    format!(
        "From: Billing <billing@example.com>\r\nTo: someone@example.org\r\n\
         Subject: Your account update {seed}\r\nX-Mailer: Microsoft Outlook 16.0\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    )
    .into_bytes()
}

fn model() -> Classifier {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.bin");
    if let Ok(m) = Model::load(std::path::Path::new(shipped)) {
        return Classifier::new(m);
    }
    let mut c = Classifier::new(Model::new(outscore::classifier::model::DEFAULT_BITS, true));
    for n in 0..400 {
        c.add(&message_5k(n), n % 2 == 0);
    }
    c.finish();
    c
}

/// CPU time of the calling thread.
struct ThreadCpu;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &MicrosFormatter
    }
}

/// Shows nanosecond values as µs of CPU time.
struct MicrosFormatter;

impl ValueFormatter for MicrosFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values.iter_mut() {
            *v /= 1000.0;
        }
        "µs cpu"
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // values are ns per iteration → MB/s of CPU time.
        let bytes = match throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => *b as f64,
            Throughput::Elements(e) => *e as f64,
        };
        for v in values.iter_mut() {
            *v = bytes * 1000.0 / *v;
        }
        "MB/s cpu"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench(c: &mut Criterion<ThreadCpu>) {
    let classifier = model();
    let raw = message_5k(99_999);
    let mut g = c.benchmark_group("classifier");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("parse_and_classify_5k", |b| {
        b.iter(|| classifier.classify(black_box(&raw)))
    });
    let parsed = outscore::message::parse(&raw);
    g.bench_function("classify_parsed_5k", |b| {
        b.iter(|| classifier.classify_parsed(black_box(&parsed)))
    });
    // What the pipeline adds to the rules: the text is already normalised.
    let ctx = outscore::rules::Context::new(&parsed);
    let view = View {
        msg: &parsed,
        subject: &ctx.subject.text,
        body: &ctx.body.text,
    };
    g.bench_function("classify_view_5k", |b| {
        b.iter(|| classifier.classify_view(black_box(view)))
    });
    g.bench_function("parse_only_5k", |b| {
        b.iter(|| outscore::message::parse(black_box(&raw)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench
}
criterion_main!(benches);
