//! The one call the pipeline makes for sender identity: gather the DNS facts
//! (SPF, DMARC policy) within the budget, find the sending account (login or
//! attribution), and run the identity rules. Holds the shared resolver cache
//! and the accounts directory; knows nothing of milter or scoring weights.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::accounts::{AccountsDirectory, AccountsError};
use super::spf::{SpfChecker, SpfError};
use crate::config::Config;
use crate::envelope::Envelope;
use crate::rules::identity::{
    evaluate, header_from_addresses, header_from_domain, IdentityFacts, IdentityOptions,
    IdentitySymbol, Sender,
};

/// Could not set up the identity checks.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Spf(#[from] SpfError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
}

/// Everything found about one message's sender identity.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityOutcome {
    /// Header From addresses, lower-cased.
    pub header_from: Vec<String>,
    /// The account the message is charged to, if known.
    pub sender: Option<Sender>,
    pub facts: IdentityFacts,
    pub symbols: Vec<IdentitySymbol>,
}

impl IdentityOutcome {
    /// Header From addresses the sending account may not use.
    pub fn foreign_header_from(&self) -> Vec<String> {
        match &self.sender {
            Some(sender) => self
                .header_from
                .iter()
                .filter(|a| sender.may_not_send_as(a))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }
}

/// SPF checker + accounts directory + rule options. One per daemon.
pub struct IdentityChecker {
    spf: Option<SpfChecker>,
    accounts: ArcSwap<AccountsDirectory>,
    options: IdentityOptions,
}

impl IdentityChecker {
    /// Build from `[spf]` and `[identity]`, reading the accounts file.
    pub fn from_config(config: &Config) -> Result<IdentityChecker, IdentityError> {
        // Without an address to check there is nothing for SPF (or the DMARC
        // alignment it feeds) to decide, and no reason to wait on DNS.
        let spf_has_work = !config.spf.egress_ips.is_empty() || config.spf.check_client_ip;
        let spf = if config.spf.enabled && spf_has_work {
            Some(SpfChecker::new(&config.spf)?)
        } else {
            None
        };
        Ok(IdentityChecker {
            spf,
            accounts: ArcSwap::from_pointee(AccountsDirectory::load(&config.identity)?),
            options: IdentityOptions {
                default_alignment: config.identity.alignment,
            },
        })
    }

    /// Swap in a reloaded (or database-backed) accounts directory.
    pub fn replace_accounts(&self, accounts: AccountsDirectory) {
        self.accounts.store(Arc::new(accounts));
    }

    /// The account a message is charged to (SASL login or attribution),
    /// without any DNS: for early decisions at MAIL FROM.
    pub fn sender(&self, envelope: &Envelope) -> Option<Sender> {
        self.accounts.load().sender(envelope)
    }

    /// Gather the facts and run the rules. Never fails: DNS trouble becomes
    /// `SPF_TEMPERROR`, bounded by `[spf] budget`.
    pub async fn check(&self, envelope: &Envelope, raw: &[u8]) -> IdentityOutcome {
        let header_from = header_from_addresses(raw);
        let facts = match &self.spf {
            Some(spf) => {
                spf.gather(envelope, header_from_domain(&header_from).as_deref())
                    .await
            }
            None => IdentityFacts::default(),
        };
        let sender = self.sender(envelope);
        let symbols = evaluate(
            envelope,
            &header_from,
            &facts,
            sender.as_ref(),
            self.options,
        );
        IdentityOutcome {
            header_from,
            sender,
            facts,
            symbols,
        }
    }
}
