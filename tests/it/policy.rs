//! The policy decisions with a controllable clock: every tier, every volume
//! limit, the day rollover, prison expiry and the 90-day unblock rule, run
//! through the same calls the pipeline makes (facts → gate → effects →
//! facts again). State lives in plain values here; the database-backed run
//! of the same traits is in tests/policy_store.rs.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use outscore::config::{AccountsConfig, LimitsConfig};
use outscore::envelope::Envelope;
use outscore::policy::limits::spam_read_keys;
use outscore::policy::{
    AccountEntry, AccountFacts, AccountStatus, Actor, AuditEntry, CounterKey, Directory, Effect,
    Event, GateReason, History, MemberOutcome, Outgoing, Policy, RcptStep, RefusalReason, Scored,
    SpamCounts, Tier, TierTable, TransitionError, UnblockRecord,
};
use outscore::scoring::Engine;
use outscore::smtp::Decision;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// One account's persisted state, updated only through the effects the
/// policy returns.
struct Account {
    name: String,
    status: AccountStatus,
    audit: Vec<AuditEntry>,
    unblocks: Vec<UnblockRecord>,
    counters: HashMap<CounterKey, u64>,
    sets: HashMap<CounterKey, BTreeSet<String>>,
    events: Vec<Event>,
}

impl Account {
    fn new(name: &str) -> Account {
        Account {
            name: name.into(),
            status: AccountStatus::Active,
            audit: Vec::new(),
            unblocks: Vec::new(),
            counters: HashMap::new(),
            sets: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn facts(&self, policy: &Policy, now: DateTime<Utc>) -> AccountFacts {
        let cells =
            spam_read_keys(&self.name, now).map(|k| self.counters.get(&k).copied().unwrap_or(0));
        AccountFacts::derive(
            &self.name,
            self.status.clone(),
            &self.audit,
            self.unblocks.clone(),
            SpamCounts::from_cells(cells),
            Duration::from_std(policy.limits.repeat_offender_period).unwrap(),
            now,
        )
    }

    fn persist(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Transition(tr) => {
                    self.status = tr.to;
                    self.audit.push(tr.audit);
                    self.unblocks.extend(tr.unblock);
                }
                Effect::Audit(a) => self.audit.push(a),
                Effect::Bump(k) => *self.counters.entry(k).or_default() += 1,
                Effect::Notify(e) => self.events.push(e),
            }
        }
    }

    fn capped_add(&mut self, key: CounterKey, member: String, cap: u64) -> MemberOutcome {
        let set = self.sets.entry(key).or_default();
        if set.contains(&member) {
            MemberOutcome::Known
        } else if set.len() as u64 >= cap {
            MemberOutcome::Full(set.len() as u64)
        } else {
            set.insert(member);
            MemberOutcome::Added(set.len() as u64)
        }
    }

    /// MAIL FROM as the pipeline does it: gate, then the rate counter.
    fn mail(&mut self, policy: &Policy, size: Option<u64>, now: DateTime<Utc>) -> Decision {
        let mut facts = self.facts(policy, now);
        let gate = policy.at_mail(&facts, size, now);
        if gate.is_refusal() {
            return gate.decision;
        }
        let key = policy.rate_key(&self.name, now);
        let n = {
            let c = self.counters.entry(key).or_default();
            *c += 1;
            *c
        };
        let gate = policy.after_rate(&mut facts, n, now);
        self.persist(gate.effects);
        gate.decision
    }

    fn rcpt(
        &mut self,
        policy: &Policy,
        so_far: usize,
        rcpt: &str,
        now: DateTime<Utc>,
    ) -> (Decision, Option<GateReason>) {
        let mut facts = self.facts(policy, now);
        let gate = match policy.at_rcpt(&facts, so_far, rcpt, now) {
            RcptStep::Gate(g) => g,
            RcptStep::CountExternal { key, member, cap } => {
                let outcome = self.capped_add(key, member, cap);
                policy.after_external(&mut facts, outcome, now)
            }
        };
        let reason = gate.reason;
        self.persist(gate.effects);
        (gate.decision, reason)
    }

    /// A whole message: MAIL, one RCPT, EOM with this score.
    fn send(
        &mut self,
        policy: &Policy,
        score: f64,
        symbols: &[&str],
        now: DateTime<Utc>,
    ) -> (Decision, Option<Tier>) {
        let d = self.mail(policy, None, now);
        if d.is_refusal() {
            return (d, None);
        }
        let (d, _) = self.rcpt(policy, 0, "friend@example.org", now);
        if d.is_refusal() {
            return (d, None);
        }
        let mut facts = self.facts(policy, now);
        let out = policy.at_eom(
            &mut facts,
            &Scored {
                score,
                reject_score: 15.0,
                symbols,
                refused: false,
            },
            &Outgoing::sized(1000),
            "7f3a9c0d1e2f3a4b",
            now,
        );
        self.persist(out.effects);
        (out.decision, out.tier.map(|t| t.tier))
    }
}

fn policy() -> Policy {
    policy_with(LimitsConfig {
        hosted_domains: vec!["hosted.example".into()],
        ..LimitsConfig::default()
    })
}

fn policy_with(limits: LimitsConfig) -> Policy {
    let mut dir = Directory::default();
    dir.insert(AccountEntry {
        login: "bulk@hosted.example".into(),
        contact: Some("owner@contact.example".into()),
        daily_external_rcpts: Some(500),
        ..AccountEntry::default()
    });
    Policy::new(
        TierTable::load(Path::new("scores/tiers.toml")).unwrap(),
        limits,
        &AccountsConfig::default(),
        dir,
    )
}

fn reply_text(d: &Decision) -> String {
    match d {
        Decision::Reply(r) => r.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn every_tier_is_reachable_with_the_shipped_table() {
    let table = TierTable::load(Path::new("scores/tiers.toml")).unwrap();
    let h = History::default();
    let cases: Vec<(f64, Vec<&str>, History, Option<Tier>)> = vec![
        (10.0, vec![], h, None),
        (16.0, vec![], h, Some(Tier::LSpam00)),
        (1000.0, vec!["GTUBE"], h, Some(Tier::LSpam10)),
        (31.0, vec![], h, Some(Tier::LSpam10)),
        (
            16.0,
            vec![],
            History {
                spam_last_hour: 2,
                ..h
            },
            Some(Tier::LSpam10),
        ),
        (16.0, vec!["ATTACH_DANGEROUS_EXT"], h, Some(Tier::LSpam11)),
        (
            16.0,
            vec![],
            History {
                limit_hits_last_day: 1,
                ..h
            },
            Some(Tier::LSpam11),
        ),
        (
            16.0,
            vec![],
            History { resets_90d: 1, ..h },
            Some(Tier::LSpam20),
        ),
        (
            16.0,
            vec![],
            History {
                offences_since_reset: 2,
                ..h
            },
            Some(Tier::LSpam20),
        ),
        (40.0, vec!["ATTACH_DANGEROUS_EXT"], h, Some(Tier::LSpam21)),
        (
            16.0,
            vec![],
            History {
                spam_last_hour: 9,
                ..h
            },
            Some(Tier::LSpam30),
        ),
        (
            16.0,
            vec![],
            History {
                limit_hits_last_day: 2,
                ..h
            },
            Some(Tier::LSpam30),
        ),
        (
            16.0,
            vec![],
            History {
                suspensions_90d: 1,
                ..h
            },
            Some(Tier::LSpam31),
        ),
        (
            16.0,
            vec![],
            History {
                spam_last_hour: 24,
                ..h
            },
            Some(Tier::LSpam40),
        ),
        (
            16.0,
            vec![],
            History {
                spam_last_day: 99,
                ..h
            },
            Some(Tier::LSpam40),
        ),
        (
            16.0,
            vec![],
            History {
                suspensions_90d: 2,
                ..h
            },
            Some(Tier::LSpam40),
        ),
        // History alone never tiers a clean message.
        (
            5.0,
            vec![],
            History {
                suspensions_90d: 5,
                spam_last_hour: 50,
                limit_hits_last_day: 5,
                ..h
            },
            None,
        ),
    ];
    let mut seen = BTreeSet::new();
    for (i, (score, symbols, history, want)) in cases.iter().enumerate() {
        let got = table.evaluate(
            &Scored {
                score: *score,
                reject_score: 15.0,
                symbols,
                refused: false,
            },
            history,
        );
        assert_eq!(got.as_ref().map(|d| d.tier), *want, "case {i}: {got:?}");
        if let Some(d) = got {
            assert!(d.explanation.contains(d.tier.as_str()), "{}", d.explanation);
            assert!(d.explanation.contains("tiers.toml:"), "{}", d.explanation);
            seen.insert(d.tier);
        }
    }
    assert_eq!(seen.len(), 8, "every tier reached: {seen:?}");
}

#[test]
fn explanation_points_at_the_rule_line_in_the_file() {
    let text = std::fs::read_to_string("scores/tiers.toml").unwrap();
    let table = TierTable::parse(Path::new("scores/tiers.toml"), &text).unwrap();
    let d = table
        .evaluate(
            &Scored {
                score: 16.0,
                reject_score: 15.0,
                symbols: &[],
                refused: false,
            },
            &History::default(),
        )
        .unwrap();
    let line = text.lines().nth(d.rule_line - 1).unwrap();
    assert_eq!(line, "[[rule]]");
    let next = text.lines().nth(d.rule_line).unwrap();
    assert_eq!(next, "tier = \"L-SPAM00\"");
}

#[test]
fn gtube_report_from_the_engine_gets_a_tier_and_a_reply_with_report_id() {
    let engine = Engine::builtin();
    let raw = format!(
        "From: a@hosted.example\r\nTo: b@example.org\r\nSubject: t\r\n\r\n{}\r\n",
        String::from_utf8_lossy(outscore::scoring::engine::GTUBE)
    );
    let report = engine.scan(&Envelope::default(), raw.as_bytes());
    let symbols: Vec<&str> = report.symbols.iter().map(|s| s.name.as_str()).collect();
    let p = policy();
    let mut acct = Account::new("victim@hosted.example");
    let mut facts = acct.facts(&p, t("2026-11-22T10:00:00Z"));
    let out = p.at_eom(
        &mut facts,
        &Scored {
            score: report.score,
            reject_score: engine.reject_score(),
            symbols: &symbols,
            refused: false,
        },
        &Outgoing::sized(raw.len() as u64),
        "0123456789abcdef",
        t("2026-11-22T10:00:00Z"),
    );
    assert_eq!(out.tier.as_ref().map(|d| d.tier), Some(Tier::LSpam10));
    assert_eq!(
        reply_text(&out.decision),
        "550 5.7.1 L-SPAM10 outbound spam blocked, password change required, report 0123456789abcdef"
    );
    acct.persist(out.effects);
    assert!(matches!(
        acct.status,
        AccountStatus::PasswordResetRequired {
            tier: Tier::LSpam10,
            ..
        }
    ));
    assert_eq!(acct.events.len(), 1);
    assert_eq!(acct.events[0].kind, "password_reset_required");
}

#[test]
fn reset_then_relapse_then_suspension_and_the_90_day_rule() {
    let p = policy();
    let mut a = Account::new("victim@hosted.example");
    let mut now = t("2026-11-22T10:00:00Z");

    // Clean mail is accepted.
    assert_eq!(a.send(&p, 3.0, &[], now), (Decision::Continue, None));
    // One message a little over the line: lowest tier, password reset.
    let (d, tier) = a.send(&p, 16.0, &[], now);
    assert_eq!(tier, Some(Tier::LSpam00));
    assert!(reply_text(&d).starts_with("550 5.7.1 L-SPAM00"), "{d:?}");
    assert_eq!(a.status.name(), "password_reset_required");
    // The next message is refused at MAIL FROM with the tier's code.
    now += Duration::minutes(1);
    let d = a.mail(&p, None, now);
    assert!(reply_text(&d).contains("L-SPAM00"), "{d:?}");
    assert!(reply_text(&d).contains("7f3a9c0d1e2f3a4b"), "{d:?}");
    // Self-service "unblock" of a reset block is not a thing: reset needed.
    let facts = a.facts(&p, now);
    assert_eq!(
        p.unblock(&facts, &Actor::Customer("victim".into()), None, now)
            .unwrap_err(),
        TransitionError::PasswordResetRequired {
            account: facts.account.clone()
        }
    );
    // The provider confirms the password change.
    now += Duration::hours(1);
    let (tr, ev) = p
        .reset_done(
            &a.facts(&p, now),
            &Actor::Customer("panel".into()),
            None,
            now,
        )
        .unwrap();
    assert_eq!(ev.kind, "reset_done");
    a.persist(vec![Effect::Transition(tr)]);
    assert_eq!(a.status, AccountStatus::Active);
    assert_eq!(a.mail(&p, None, now), Decision::Continue);

    // Spam again after the reset: suspension (L-SPAM20), contact told.
    now += Duration::hours(2);
    let (d, tier) = a.send(&p, 17.0, &[], now);
    assert_eq!(tier, Some(Tier::LSpam20), "{d:?}");
    assert_eq!(a.status.name(), "suspended");
    let ev = a.events.last().unwrap();
    assert_eq!(ev.kind, "suspended");
    assert_eq!(ev.contact.as_deref(), Some("victim@hosted.example"));
    assert!(ev.reason.contains("resets_90d 1 >= 1"), "{}", ev.reason);
    // A password reset does not lift a suspension.
    assert!(matches!(
        p.reset_done(
            &a.facts(&p, now),
            &Actor::Customer("panel".into()),
            None,
            now
        ),
        Err(TransitionError::ResetDoesNotLiftSuspension { .. })
    ));
    let d = a.mail(&p, None, now + Duration::minutes(5));
    assert!(reply_text(&d).contains("L-SPAM20"), "{d:?}");

    // First self-service unblock works.
    now += Duration::days(1);
    let (tr, _) = p
        .unblock(
            &a.facts(&p, now),
            &Actor::Customer("victim".into()),
            None,
            now,
        )
        .unwrap();
    assert!(tr.unblock.as_ref().unwrap().self_service);
    a.persist(vec![Effect::Transition(tr)]);
    let first_unblock = now;

    // Relapse after a suspension: L-SPAM31.
    now += Duration::days(10);
    let (_, tier) = a.send(&p, 16.0, &[], now);
    assert_eq!(tier, Some(Tier::LSpam31));
    // Second self-service unblock within 90 days: refused, says until when.
    now += Duration::days(1);
    let err = p
        .unblock(
            &a.facts(&p, now),
            &Actor::Customer("victim".into()),
            None,
            now,
        )
        .unwrap_err();
    match &err {
        TransitionError::TooSoon { next, .. } => {
            assert_eq!(*next, first_unblock + Duration::days(90))
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("abuse team"), "{err}");
    // The abuse team must give a reason, and then can.
    let abuse = Actor::Abuse("maria".into());
    assert_eq!(
        p.unblock(&a.facts(&p, now), &abuse, Some(" "), now)
            .unwrap_err(),
        TransitionError::ReasonRequired
    );
    let (tr, _) = p
        .unblock(
            &a.facts(&p, now),
            &abuse,
            Some("customer cleaned the PC"),
            now,
        )
        .unwrap();
    assert_eq!(tr.audit.actor, "abuse:maria");
    assert_eq!(tr.audit.detail["reason"], "customer cleaned the PC");
    a.persist(vec![Effect::Transition(tr)]);

    // Third suspension-family offence within 90 days: mass abuse rule
    // (suspensions_90d >= 2) → L-SPAM40, never self-service, not even
    // after 90 days.
    now += Duration::days(2);
    let (_, tier) = a.send(&p, 16.0, &[], now);
    assert_eq!(tier, Some(Tier::LSpam40));
    let later = now + Duration::days(200);
    assert!(matches!(
        p.unblock(
            &a.facts(&p, later),
            &Actor::Customer("victim".into()),
            None,
            later
        ),
        Err(TransitionError::NeverSelfService {
            tier: Tier::LSpam40,
            ..
        })
    ));
    // Every state change is in the audit log with who/what/when/why.
    let actions: Vec<&str> = a.audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tier",
            "reset_done",
            "tier",
            "unblock",
            "tier",
            "unblock",
            "tier"
        ]
    );
    assert!(a.audit.iter().all(|e| !e.actor.is_empty()));
}

#[test]
fn self_service_is_possible_again_after_90_days() {
    let p = policy();
    let mut a = Account::new("shop@hosted.example");
    let mut now = t("2026-01-01T00:00:00Z");
    let customer = Actor::Customer("shop".into());
    // Suspend (malware tier), unblock once the complaint period is over,
    // suspend again 95 days later: the customer may unblock again.
    let (_, tier) = a.send(&p, 40.0, &["ATTACH_DANGEROUS_EXT"], now);
    assert_eq!(tier, Some(Tier::LSpam21));
    match p.unblock(&a.facts(&p, now), &customer, None, now) {
        Err(TransitionError::ComplaintPeriod { next, .. }) => {
            assert_eq!(next, now + Duration::hours(24))
        }
        other => panic!("expected the complaint period: {other:?}"),
    }
    now += Duration::hours(24);
    let (tr, _) = p.unblock(&a.facts(&p, now), &customer, None, now).unwrap();
    a.persist(vec![Effect::Transition(tr)]);
    now += Duration::days(95);
    let (_, tier) = a.send(&p, 40.0, &["ATTACH_DANGEROUS_EXT"], now);
    assert_eq!(
        tier,
        Some(Tier::LSpam21),
        "old suspension is out of 90 days"
    );
    now += Duration::hours(24);
    assert!(p.unblock(&a.facts(&p, now), &customer, None, now).is_ok());
    // Exactly at 90 days after an unblock it is allowed; a second before, not.
    let mut b = Account::new("b@hosted.example");
    let start = t("2026-03-01T12:00:00Z");
    b.send(
        &p,
        40.0,
        &["ATTACH_DANGEROUS_EXT"],
        start - Duration::days(1),
    );
    let (tr, _) = p
        .unblock(&b.facts(&p, start), &customer, None, start)
        .unwrap();
    b.persist(vec![Effect::Transition(tr)]);
    let again = start + Duration::days(1);
    b.send(&p, 40.0, &["ATTACH_DANGEROUS_EXT"], again);
    let edge = start + Duration::days(90);
    assert!(p
        .unblock(
            &b.facts(&p, edge - Duration::seconds(1)),
            &customer,
            None,
            edge - Duration::seconds(1)
        )
        .is_err());
    assert!(p.unblock(&b.facts(&p, edge), &customer, None, edge).is_ok());
}

#[test]
fn repeated_spam_escalates_within_the_hour() {
    let p = policy();
    let mut now = t("2026-11-22T08:00:00Z");
    // Three relays' worth of concurrent spam: the account is blocked after
    // the first, but messages already past MAIL FROM still count.
    let mut a = Account::new("x@hosted.example");
    let mut facts = a.facts(&p, now);
    let mut tiers = Vec::new();
    for _ in 0..12 {
        now += Duration::seconds(20);
        let out = p.at_eom(
            &mut facts,
            &Scored {
                score: 16.0,
                reject_score: 15.0,
                symbols: &[],
                refused: false,
            },
            &Outgoing::sized(100),
            "00000000000000aa",
            now,
        );
        tiers.push(out.tier.unwrap().tier);
        a.persist(out.effects);
    }
    assert_eq!(tiers[0], Tier::LSpam00);
    assert_eq!(tiers[2], Tier::LSpam10, "{tiers:?}");
    assert_eq!(tiers[9], Tier::LSpam30, "{tiers:?}");
    // The persisted counters give the same history back.
    let f = a.facts(&p, now);
    assert_eq!(f.history.spam_last_hour, 12);
    assert_eq!(f.status.tier(), Some(Tier::LSpam30));
}

#[test]
fn recipients_per_message_limit_refuses_the_151st() {
    let p = policy();
    let mut a = Account::new("bulk@hosted.example");
    let now = t("2026-11-22T10:00:00Z");
    assert_eq!(a.mail(&p, None, now), Decision::Continue);
    for i in 0..150 {
        let (d, _) = a.rcpt(&p, i, &format!("r{i}@hosted.example"), now);
        assert_eq!(d, Decision::Continue, "rcpt {i}");
    }
    let (d, reason) = a.rcpt(&p, 150, "r150@hosted.example", now);
    assert_eq!(reply_text(&d), "452 4.5.3 Too many recipients");
    assert_eq!(reason, Some(GateReason::TooManyRecipients));
}

#[test]
fn rate_limit_prison_and_expiry() {
    let p = policy();
    let mut a = Account::new("web@hosted.example");
    let start = t("2026-11-22T10:00:00Z");
    for i in 0..250 {
        let now = start + Duration::seconds(i);
        assert_eq!(a.mail(&p, None, now), Decision::Continue, "message {i}");
    }
    let hit = start + Duration::seconds(250);
    let d = a.mail(&p, None, hit);
    assert!(reply_text(&d).starts_with("451 4.7.1"), "{d:?}");
    assert!(reply_text(&d).contains("policy violation"), "{d:?}");
    assert_eq!(a.audit.last().unwrap().action, "prison");
    // The provider's integration hears of it, with when it ends.
    let ev = a.events.last().expect("a prison event");
    assert_eq!(ev.kind, "prison");
    assert!(
        ev.reason.contains("until") && ev.reason.contains("20m"),
        "{}",
        ev.reason
    );
    // In prison: everything is temp-refused, even in a new rate window.
    let inside = hit + Duration::minutes(19);
    let d = a.mail(&p, None, inside);
    assert!(d.is_refusal() && reply_text(&d).starts_with("451"), "{d:?}");
    assert_eq!(a.audit.len(), 1, "prison is entered once");
    // Prison expires after 20 minutes.
    let out = hit + Duration::minutes(20);
    assert_eq!(a.mail(&p, None, out), Decision::Continue);
    // The prison counts toward the tiers: the next spam is L-SPAM11, not 00,
    // and the reply names that reason, not a dangerous attachment.
    let (d, tier) = a.send(&p, 16.0, &[], out + Duration::minutes(1));
    assert_eq!(tier, Some(Tier::LSpam11));
    let text = reply_text(&d);
    assert!(
        text.contains("spam while over the sending limits"),
        "{text}"
    );
    assert!(!text.contains("dangerous"), "{text}");
}

#[test]
fn daily_external_budget_rollover_and_repeat_offender() {
    let athens = outscore::config::LimitsConfig {
        hosted_domains: vec!["hosted.example".into()],
        day_zone: outscore::config::DayZone::Fixed(
            chrono::FixedOffset::east_opt(2 * 3600).unwrap(),
        ),
        ..LimitsConfig::default()
    };
    let p = policy_with(athens);
    let mut a = Account::new("sales@hosted.example");
    // 23:00 local (+02:00) on Nov 22.
    let now = t("2026-11-22T21:00:00Z");
    for i in 0..100 {
        let (d, _) = a.rcpt(&p, 0, &format!("c{i}@customer{i}.example"), now);
        assert_eq!(d, Decision::Continue, "recipient {i}");
    }
    // Hosted recipients do not count.
    assert_eq!(
        a.rcpt(&p, 0, "colleague@hosted.example", now).0,
        Decision::Continue
    );
    // A recipient already written to today is free.
    assert_eq!(
        a.rcpt(&p, 0, "C7@Customer7.example", now).0,
        Decision::Continue
    );
    // The 101st distinct external recipient is refused, with a valid code.
    let (d, reason) = a.rcpt(&p, 0, "new@other.example", now);
    assert_eq!(reason, Some(GateReason::DailyLimit));
    assert!(
        reply_text(&d).starts_with("550 5.7.1 Fair usage limit"),
        "{d:?}"
    );
    // Retrying the same refused recipient is still refused.
    assert!(a.rcpt(&p, 0, "new@other.example", now).0.is_refusal());
    assert_eq!(
        a.audit.iter().filter(|e| e.action == "daily_limit").count(),
        1,
        "the hit is audited once per day"
    );
    assert_eq!(
        a.events.iter().filter(|e| e.kind == "daily_limit").count(),
        1,
        "and notified once per day"
    );
    // 23:59:59 local: still the same day.
    let late = t("2026-11-22T21:59:59Z");
    assert!(a.rcpt(&p, 0, "new2@other.example", late).0.is_refusal());
    // 00:00 local: the budget is reset.
    let midnight = t("2026-11-22T22:00:00Z");
    assert_eq!(
        a.rcpt(&p, 0, "new@other.example", midnight).0,
        Decision::Continue
    );
    // One offence so far; a second one (prison or tier) makes a repeat
    // offender whose budget is lowered to 20 per day.
    let facts = a.facts(&p, midnight);
    assert_eq!(p.daily_budget(&facts), 100);
    let (_, tier) = a.send(&p, 16.0, &[], midnight + Duration::minutes(1));
    assert!(tier.is_some());
    let facts = a.facts(&p, midnight + Duration::minutes(2));
    assert_eq!(facts.recent_offences, 2);
    assert_eq!(p.daily_budget(&facts), 20);
    // …for the configured period (30 days), then back to 100.
    let facts = a.facts(&p, midnight + Duration::days(31));
    assert_eq!(p.daily_budget(&facts), 100);
    // A directory override applies to that account.
    let bulk = Account::new("bulk@hosted.example");
    assert_eq!(p.daily_budget(&bulk.facts(&p, midnight)), 500);
}

#[test]
fn size_limit_at_mail_from_and_by_counted_bytes() {
    let p = policy();
    let mut a = Account::new("big@hosted.example");
    let now = t("2026-11-22T10:00:00Z");
    let max = 30 * 1024 * 1024;
    let d = a.mail(&p, Some(max + 1), now);
    assert!(reply_text(&d).starts_with("552 5.3.4"), "{d:?}");
    assert_eq!(a.mail(&p, Some(max), now), Decision::Continue);
    let mut facts = a.facts(&p, now);
    let scored = Scored {
        score: 0.0,
        reject_score: 15.0,
        symbols: &[],
        refused: false,
    };
    let out = p.at_eom(
        &mut facts,
        &scored,
        &Outgoing::sized(max + 1),
        "00000000000000bb",
        now,
    );
    assert!(reply_text(&out.decision).starts_with("552"), "{out:?}");
    let out = p.at_eom(
        &mut facts,
        &scored,
        &Outgoing::sized(max),
        "00000000000000bb",
        now,
    );
    assert_eq!(out.decision, Decision::Continue);
}

#[test]
fn a_suspension_is_never_downgraded_to_a_reset() {
    let p = policy();
    let mut a = Account::new("z@hosted.example");
    let now = t("2026-11-22T10:00:00Z");
    a.send(&p, 40.0, &["ATTACH_DANGEROUS_EXT"], now);
    assert_eq!(a.status.tier(), Some(Tier::LSpam21));
    let mut facts = a.facts(&p, now);
    let out = p.at_eom(
        &mut facts,
        &Scored {
            score: 16.0,
            reject_score: 15.0,
            symbols: &[],
            refused: false,
        },
        &Outgoing::sized(10),
        "00000000000000cc",
        now,
    );
    // The message is still refused, but the account keeps its suspension.
    assert!(out.decision.is_refusal());
    assert!(!out
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Transition(_))));
}

#[test]
fn from_config_reports_tier_and_directory_errors_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("scores");
    std::fs::create_dir_all(&scores).unwrap();
    std::fs::write(
        scores.join("tiers.toml"),
        "[[rule]]\ntier = \"L-SPAM50\"\nscore = 1.0\n",
    )
    .unwrap();
    let csv = dir.path().join("accounts.csv");
    std::fs::write(&csv, "login,sensitivity\na@b.example,extreme\n").unwrap();
    let text = format!(
        "data_dir = {:?}\n[scoring]\nscores_dir = {:?}\n",
        dir.path(),
        scores
    );
    let config = outscore::config::Config::parse(Path::new("o.toml"), &text).unwrap();
    let err = Policy::from_config(&config).unwrap_err().to_string();
    assert!(err.contains("tiers.toml:1:"), "{err}");
    assert!(err.contains("accounts.csv:2:"), "{err}");
    // Fixed files load, and the imported directory is used.
    std::fs::write(
        scores.join("tiers.toml"),
        "[[rule]]\ntier = \"L-SPAM00\"\nscore = 1.0\n",
    )
    .unwrap();
    std::fs::write(&csv, "login,contact\na@b.example,owner@c.example\n").unwrap();
    let p = Policy::from_config(&config).unwrap();
    assert_eq!(p.tiers.rule_count(), 1);
    assert_eq!(
        p.directory.get("a@b.example").contact.as_deref(),
        Some("owner@c.example")
    );
}

#[test]
fn tier_symbol_sets_name_symbols_the_engine_declares() {
    let symbols = std::fs::read_to_string("scores/symbols.toml").unwrap();
    let declared: toml::Table = symbols.parse().unwrap();
    let table = TierTable::load(Path::new("scores/tiers.toml")).unwrap();
    let mut n = 0;
    for (set, symbol) in table.set_symbols() {
        assert!(
            declared.contains_key(symbol),
            "tiers.toml [sets] {set}: {symbol} is not in scores/symbols.toml"
        );
        n += 1;
    }
    assert!(n >= 2, "the shipped sets name symbols");
}

/// A dangerous attachment in an ordinary message is refused by the
/// attachment policy and costs the account nothing; the fifth refusal in an
/// hour escalates to L-SPAM11 (tiers.toml `refusals_last_hour`); with spam
/// text the first one is a tier at once.
#[test]
fn policy_refusals_are_no_account_action_until_they_repeat() {
    use outscore::rules::attachments::DangerousFile;
    let p = policy();
    let files = [DangerousFile {
        name: "report.exe".into(),
        member: None,
        ext: "exe".into(),
        sniffed: false,
    }];
    let message = Outgoing {
        size: 2000,
        rcpts: 1,
        dangerous_files: &files,
        foreign_header_from: &[],
    };
    let mut a = Account::new("anna@hosted.example");
    let mut now = t("2026-11-22T10:00:00Z");
    let symbols = ["ATTACH_DANGEROUS_EXT"];
    for i in 1..=5 {
        now += Duration::minutes(5);
        let mut facts = a.facts(&p, now);
        let out = p.at_eom(
            &mut facts,
            &Scored {
                score: 6.0,
                reject_score: 15.0,
                symbols: &symbols,
                refused: false,
            },
            &message,
            "00000000000000cc",
            now,
        );
        assert_eq!(out.refusal, Some(RefusalReason::DangerousAttachment));
        let text = reply_text(&out.decision);
        if i < 5 {
            assert_eq!(out.tier, None, "refusal {i}");
            assert_eq!(
                text,
                "550 5.7.1 Attachment \"report.exe\" refused: .exe files are not allowed"
            );
            assert!(
                !out.effects
                    .iter()
                    .any(|e| matches!(e, Effect::Transition(_) | Effect::Notify(_))),
                "refusal {i} acted on the account: {:?}",
                out.effects
            );
        } else {
            let tier = out.tier.as_ref().map(|t| t.tier);
            assert_eq!(tier, Some(Tier::LSpam11), "{text}");
            assert!(
                out.tier
                    .unwrap()
                    .explanation
                    .contains("refusals_last_hour 5 >= 5"),
                "{text}"
            );
            assert!(
                text.contains("L-SPAM11 repeated refused messages"),
                "{text}"
            );
        }
        a.persist(out.effects);
    }
    // Spam text with the file: a tier at the first message.
    let mut b = Account::new("bob@hosted.example");
    let mut facts = b.facts(&p, now);
    let out = p.at_eom(
        &mut facts,
        &Scored {
            score: 18.0,
            reject_score: 15.0,
            symbols: &symbols,
            refused: false,
        },
        &message,
        "00000000000000cd",
        now,
    );
    assert_eq!(out.tier.map(|t| t.tier), Some(Tier::LSpam11));
    b.persist(out.effects);
    // A clean message from a has no refusal and no tier even right after.
    let mut facts = a.facts(&p, now + Duration::minutes(1));
    let out = p.at_eom(
        &mut facts,
        &Scored {
            score: 1.0,
            reject_score: 15.0,
            symbols: &[],
            refused: false,
        },
        &Outgoing::sized(100),
        "00000000000000ce",
        now,
    );
    assert_eq!(out.decision, Decision::Continue);
}
