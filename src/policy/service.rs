//! The policy with its persistence: loads an account's facts through the
//! [`super::store`] traits, runs the pure decisions and persists their
//! effects (state, audit, counters) and queues notifications. This is what
//! the pipeline, the `outscore account` commands and the review interface's
//! account actions call (the daemon shares one instance, so one facts
//! cache); it is generic over the traits and picks no backend itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

use super::history::LimitRestriction;
use super::limits::{day_start, spam_read_keys};
use super::store::{AccountRepo, EventSink, EventSinkError, PolicyStoreError, VolumeCounters};
use super::{
    AccountFacts, Actor, Effect, EomOutcome, Event, Gate, Policy, RcptStep, Scored, SpamCounts,
    Tier, Transition, TransitionError,
};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] PolicyStoreError),
    #[error(transparent)]
    Notify(#[from] EventSinkError),
    #[error(transparent)]
    Refused(#[from] TransitionError),
}

/// Recently read account facts, so the MAIL, RCPT and end-of-message
/// steps of one message (and a burst of messages) do not each re-read the
/// audit log. An entry is dropped when this process changes the account;
/// changes made by other relays are seen after at most `ttl`.
#[derive(Debug)]
pub struct FactsCache {
    ttl: std::time::Duration,
    entries: Mutex<HashMap<String, (Instant, AccountFacts)>>,
}

impl FactsCache {
    /// Upper bound on the entries kept; the cache is cleared when full.
    const MAX_ENTRIES: usize = 100_000;

    pub fn new(ttl: std::time::Duration) -> FactsCache {
        FactsCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, account: &str) -> Option<AccountFacts> {
        let entries = self.entries.lock().expect("facts cache lock");
        entries
            .get(account)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, f)| f.clone())
    }

    fn put(&self, facts: &AccountFacts) {
        let mut entries = self.entries.lock().expect("facts cache lock");
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(facts.account.clone(), (Instant::now(), facts.clone()));
    }

    pub fn forget(&self, account: &str) {
        self.entries
            .lock()
            .expect("facts cache lock")
            .remove(account);
    }
}

/// Where the enforcer reads the policy in force: a fixed one, or the
/// daemon's rule set, swapped on SIGHUP.
pub trait PolicySource: Send + Sync {
    fn current(&self) -> Arc<Policy>;
}

impl PolicySource for Arc<Policy> {
    fn current(&self) -> Arc<Policy> {
        self.clone()
    }
}

/// Policy + account repository + counters + where events go.
pub struct Enforcer<R, C, E> {
    policy: Arc<dyn PolicySource>,
    pub repo: R,
    pub counters: C,
    pub events: E,
    pub cache: FactsCache,
}

impl<R: AccountRepo, C: VolumeCounters, E: EventSink> Enforcer<R, C, E> {
    /// An enforcer with a 2-second facts cache.
    pub fn new(policy: Arc<Policy>, repo: R, counters: C, events: E) -> Self {
        Enforcer {
            policy: Arc::new(policy),
            repo,
            counters,
            events,
            cache: FactsCache::new(std::time::Duration::from_secs(2)),
        }
    }

    /// Read the policy from `source` (the daemon's shared rule set) from
    /// now on.
    pub fn with_policy_source(mut self, source: Arc<dyn PolicySource>) -> Self {
        self.policy = source;
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    /// [`Enforcer::facts`] through the cache.
    pub async fn facts_cached(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<AccountFacts, ServiceError> {
        if let Some(facts) = self.cache.get(account) {
            return Ok(facts);
        }
        let facts = self.facts(account, now).await?;
        self.cache.put(&facts);
        Ok(facts)
    }

    /// Everything the decisions need about `account`, read now.
    pub async fn facts(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<AccountFacts, ServiceError> {
        let status = self.repo.status(account).await?;
        let period = Duration::from_std(self.policy().limits.repeat_offender_period)
            .unwrap_or(Duration::days(30));
        let since = now - period.max(Duration::days(90));
        let audit = self.repo.audit_since(account, since).await?;
        let unblocks = self.repo.unblocks(account).await?;
        let mut cells = [0u64; 6];
        for (cell, key) in cells.iter_mut().zip(spam_read_keys(account, now)) {
            *cell = self.counters.get(&key).await?;
        }
        let spam = SpamCounts::from_cells(cells);
        Ok(AccountFacts::derive(
            account, status, &audit, unblocks, spam, period, now,
        ))
    }

    /// Accounts held back by a volume limit at `now` (prison, the daily
    /// budget spent today), each with its restrictions and their end, as
    /// [`AccountFacts::limit_restrictions`] derives them from the facts the
    /// gates use. At most `limit` accounts, by name.
    pub async fn limited_accounts(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<LimitRestriction>)>, ServiceError> {
        let limits = self.policy().limits.clone();
        let prison = Duration::from_std(limits.prison).unwrap_or(Duration::minutes(20));
        let since = day_start(now, limits.day_zone).min(now - prison);
        let mut out = Vec::new();
        for account in self.repo.limited_since(since).await? {
            let facts = self.facts(&account, now).await?;
            let restrictions = facts.limit_restrictions(now, limits.day_zone);
            if !restrictions.is_empty() {
                out.push((account, restrictions));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Persist effects in order; notifications go to the outbox.
    pub async fn persist(&self, effects: &[Effect]) -> Result<(), ServiceError> {
        for effect in effects {
            match effect {
                Effect::Transition(t) => {
                    self.cache.forget(&t.account);
                    if !self.repo.apply(t).await? {
                        // Lost a race: what the decision was based on is
                        // gone, so nothing after it (audit, notice) is due.
                        return Err(ServiceError::Refused(TransitionError::Changed {
                            account: t.account.clone(),
                        }));
                    }
                }
                Effect::Audit(a) => {
                    self.cache.forget(&a.account);
                    self.repo.audit(a).await?
                }
                Effect::Bump(key) => {
                    self.counters.incr_and_get(key, 1).await?;
                }
                Effect::Notify(event) => {
                    self.events.publish(event).await?;
                }
            }
        }
        Ok(())
    }

    /// Persist `effects` for real, or in observe mode only the counter
    /// bumps (the history the tiers see builds up; no state change, audit
    /// entry or notification).
    async fn apply(&self, effects: &[Effect], observe: bool) -> Result<(), ServiceError> {
        if !observe {
            return self.persist(effects).await;
        }
        let bumps: Vec<Effect> = effects
            .iter()
            .filter(|e| matches!(e, Effect::Bump(_)))
            .cloned()
            .collect();
        self.persist(&bumps).await
    }

    /// MAIL FROM: blocked, prison, SIZE=, then the rate counter. With
    /// `observe` the decision is only returned (see [`Enforcer::apply`]).
    pub async fn at_mail(
        &self,
        facts: &mut AccountFacts,
        declared_size: Option<u64>,
        now: DateTime<Utc>,
        observe: bool,
    ) -> Result<Gate, ServiceError> {
        let gate = self.policy().at_mail(facts, declared_size, now);
        if gate.is_refusal() {
            return Ok(gate);
        }
        let key = self.policy().rate_key(&facts.account, now);
        let count = self.counters.incr_and_get(&key, 1).await?;
        let gate = self.policy().after_rate(facts, count, now);
        self.apply(&gate.effects, observe).await?;
        Ok(gate)
    }

    /// RCPT TO: recipients per message, then the daily external budget.
    pub async fn at_rcpt(
        &self,
        facts: &mut AccountFacts,
        accepted_so_far: usize,
        rcpt: &str,
        now: DateTime<Utc>,
        observe: bool,
    ) -> Result<Gate, ServiceError> {
        let gate = match self.policy().at_rcpt(facts, accepted_so_far, rcpt, now) {
            RcptStep::Gate(g) => g,
            RcptStep::CountExternal { key, member, cap } => {
                let outcome = self.counters.add_member_capped(&key, &member, cap).await?;
                self.policy().after_external(facts, outcome, now)
            }
        };
        self.apply(&gate.effects, observe).await?;
        Ok(gate)
    }

    /// End of message: tier, account action, counters, notifications.
    pub async fn at_eom(
        &self,
        facts: &mut AccountFacts,
        scored: &Scored<'_>,
        message: &super::Outgoing<'_>,
        report_id: &str,
        now: DateTime<Utc>,
        observe: bool,
    ) -> Result<EomOutcome, ServiceError> {
        let out = self.policy().at_eom(facts, scored, message, report_id, now);
        if !out.effects.is_empty() {
            // Spam counters moved: the next message must see them.
            self.cache.forget(&facts.account);
        }
        self.apply(&out.effects, observe).await?;
        Ok(out)
    }

    async fn transition(
        &self,
        result: Result<(Transition, Event), TransitionError>,
    ) -> Result<Transition, ServiceError> {
        let (t, event) = result?;
        self.persist(&[Effect::Transition(t.clone()), Effect::Notify(event)])
            .await?;
        Ok(t)
    }

    /// Self-service (customer) or abuse-team unblock, 90-day rule applied.
    pub async fn unblock(
        &self,
        account: &str,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let facts = self.facts(account, now).await?;
        self.transition(self.policy().unblock(&facts, by, reason, now))
            .await
    }

    /// An unblock under the self-service rule, recorded as self-service:
    /// by the customer, or by the abuse team on the customer's behalf.
    pub async fn self_service_unblock(
        &self,
        account: &str,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let facts = self.facts(account, now).await?;
        self.transition(self.policy().self_service_unblock(&facts, by, reason, now))
            .await
    }

    /// The abuse team lifts any block (override of every rule), with a reason.
    pub async fn lift(
        &self,
        account: &str,
        by: &Actor,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let facts = self.facts(account, now).await?;
        self.transition(self.policy().lift(&facts, by, Some(reason), now))
            .await
    }

    /// Whether a self-service unblock would be allowed now, and if not why
    /// (the same rule [`Enforcer::self_service_unblock`] applies). Reads
    /// only the account's state and unblock history.
    pub async fn self_service_check(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<(), TransitionError>, ServiceError> {
        let status = self.repo.status(account).await?;
        let unblocks = self.repo.unblocks(account).await?;
        Ok(self
            .policy()
            .self_service_check(account, &status, &unblocks, now))
    }

    /// The provider confirms the password was changed.
    pub async fn reset_done(
        &self,
        account: &str,
        by: &Actor,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let facts = self.facts(account, now).await?;
        self.transition(self.policy().reset_done(&facts, by, reason, now))
            .await
    }

    /// The abuse team suspends by hand, optionally under a suspension tier.
    pub async fn suspend(
        &self,
        account: &str,
        by: &Actor,
        reason: &str,
        tier: Option<Tier>,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let facts = self.facts(account, now).await?;
        let t = super::suspend(account, &facts.status, by, reason, tier, now)?;
        let event = Event {
            kind: "suspended".into(),
            account: account.to_string(),
            contact: self.policy().directory.get(account).contact,
            tier: t.to.tier(),
            report_id: t.to.report_id().map(str::to_string),
            at: now,
            reason: reason.to_string(),
            self_service: false,
            self_service_from: None,
            symbols: Vec::new(),
        };
        self.persist(&[Effect::Transition(t.clone()), Effect::Notify(event)])
            .await?;
        Ok(t)
    }
}
