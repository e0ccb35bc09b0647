//! Arbitrary packet streams through the session state machine, with the
//! filter's answers picked from the input: the session never panics, always
//! ends a message with exactly one final reply, and never replies to a step
//! negotiated as no-reply.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use outscore::milter::frame::decode_command;
use outscore::milter::session::{Session, Step};
use outscore::smtp::{Decision, EomVerdict, HeaderEdit, SmtpReply};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let mut session = Session::new(4096);
    let mut buf = BytesMut::from(rest);
    let decisions = [
        Decision::Continue,
        Decision::Accept,
        Decision::Discard,
        Decision::Reject,
        Decision::Tempfail,
        Decision::Reply(SmtpReply::new(550, Some("5.7.1"), &["no 100%"]).unwrap()),
    ];
    let mut n = choice as usize;
    while let Ok(Some(command)) = decode_command(&mut buf, 1 << 16) {
        let Ok(step) = session.handle(command) else { return };
        n = n.wrapping_mul(31).wrapping_add(7);
        let decision = decisions[n % decisions.len()].clone();
        match step {
            Step::AskMail | Step::AskRcpt(_) => {
                let reply = session.answer(decision);
                assert!(reply.is_final());
            }
            Step::AskEom => {
                let (_envelope, message) = session.take_message();
                assert!(message.raw.len() <= 4096 + 2 || !message.truncated);
                let verdict = EomVerdict {
                    decision,
                    quarantine: (n % 3 == 0).then(|| "held".to_string()),
                    headers: vec![HeaderEdit::Add { name: "X-Test".into(), value: "1".into() }],
                };
                let replies = session.end_of_message(verdict);
                assert!(replies.last().is_some_and(|r| r.is_final()));
                assert_eq!(replies.iter().filter(|r| r.is_final()).count(), 1);
            }
            Step::Reply(_) | Step::Nothing | Step::Close => {}
        }
    }
});
