//! The accounts directory as far as sender identity goes: which addresses
//! each login may send as (aliases, any address of its own domain, explicitly
//! authorised others), and which account a message without SASL login is
//! attributed to. Loaded from a TOML file for now; a database-backed
//! directory can fill the same [`AccountsDirectory`]. Knows nothing of DNS,
//! milter or scoring.
//!
//! ```toml
//! [[account]]
//! login = "alice@customer.example"
//! own_domain = true                      # any address @customer.example
//! aliases = ["info@customer.example"]
//! allowed = ["alice.private@gmail.com"]  # explicitly authorised others
//! domains = ["customer-shop.example"]    # any address of these domains
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{IdentityConfig, LocalAttribution};
use crate::envelope::{domain_of, strip_brackets, Envelope};
use crate::rules::identity::{AccountIdentity, Sender};

/// Could not read the accounts file.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: account {login:?}: {message}")]
    Invalid {
        path: PathBuf,
        login: String,
        message: String,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    account: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    login: String,
    own_domain: Option<bool>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    allowed: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
}

/// Login → allowed identities, plus the rule for unauthenticated mail.
#[derive(Debug, Clone, Default)]
pub struct AccountsDirectory {
    accounts: HashMap<String, AccountIdentity>,
    own_domain_default: bool,
    attribution: LocalAttribution,
    attribution_map: BTreeMap<String, String>,
}

impl AccountsDirectory {
    /// An empty directory with the `[identity]` rules; every login may send
    /// as itself (and its own domain if `own_domain_default`).
    pub fn from_config(config: &IdentityConfig) -> AccountsDirectory {
        AccountsDirectory {
            accounts: HashMap::new(),
            own_domain_default: config.own_domain_default,
            attribution: config.attribution,
            attribution_map: config.attribution_map.clone(),
        }
    }

    /// The `[identity]` rules plus the accounts file they name, if any.
    pub fn load(config: &IdentityConfig) -> Result<AccountsDirectory, AccountsError> {
        let mut dir = AccountsDirectory::from_config(config);
        if let Some(path) = &config.accounts_file {
            let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
                path: path.clone(),
                source,
            })?;
            dir.add_toml(path, &text)?;
        }
        Ok(dir)
    }

    /// Add the accounts of a TOML document; `path` is for error messages.
    pub fn add_toml(&mut self, path: &Path, text: &str) -> Result<(), AccountsError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| AccountsError::Parse {
            path: path.to_path_buf(),
            line: e.span().map_or(1, |s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().to_string(),
        })?;
        for account in raw.account {
            let login = account.login.trim().to_ascii_lowercase();
            if login.is_empty() {
                return Err(AccountsError::Invalid {
                    path: path.to_path_buf(),
                    login,
                    message: "empty login".into(),
                });
            }
            let mut identity = AccountIdentity::for_login(
                &login,
                account.own_domain.unwrap_or(self.own_domain_default),
            );
            for address in account.aliases.iter().chain(&account.allowed) {
                let address = strip_brackets(address).to_ascii_lowercase();
                if domain_of(&address).is_none() {
                    return Err(AccountsError::Invalid {
                        path: path.to_path_buf(),
                        login,
                        message: format!("{address:?} is not an address"),
                    });
                }
                identity.addresses.push(address);
            }
            identity.domains = account
                .domains
                .iter()
                .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect();
            self.insert(identity);
        }
        Ok(())
    }

    /// Add what the accounts directory CSV allows `login` (its
    /// `identities` column: addresses and `@domain`s) to its entry here.
    pub fn add_identities(&mut self, login: &str, identities: &[String]) {
        if identities.is_empty() {
            return;
        }
        let mut identity = self.identity_for(login);
        for item in identities {
            let item = item.trim().to_ascii_lowercase();
            match item.strip_prefix('@') {
                Some(domain) if !domain.is_empty() => {
                    let domain = domain.trim_end_matches('.').to_string();
                    if !identity.domains.contains(&domain) {
                        identity.domains.push(domain);
                    }
                }
                _ if domain_of(&item).is_some() && !identity.addresses.contains(&item) => {
                    identity.addresses.push(item);
                }
                _ => {}
            }
        }
        self.insert(identity);
    }

    /// Add or replace one account (keyed by its login).
    pub fn insert(&mut self, identity: AccountIdentity) {
        self.accounts.insert(identity.login.clone(), identity);
    }

    /// The identities `login` may use: its directory entry, or the default.
    pub fn identity_for(&self, login: &str) -> AccountIdentity {
        let key = login.trim().to_ascii_lowercase();
        match self.accounts.get(&key) {
            Some(identity) => identity.clone(),
            None => AccountIdentity::for_login(&key, self.own_domain_default),
        }
    }

    /// Who sent this message: the SASL login, or for mail without one
    /// (websites through `sendmail`, `non_smtpd_milters`) the account the
    /// attribution rule gives; `None` when neither applies.
    pub fn sender(&self, envelope: &Envelope) -> Option<Sender> {
        if let Some(login) = envelope
            .auth_login
            .as_deref()
            .filter(|l| !l.trim().is_empty())
        {
            return Some(Sender {
                account: login.trim().to_ascii_lowercase(),
                how: "login".into(),
                identity: self.identity_for(login),
                check_identity: true,
            });
        }
        let origin = if envelope.local_submission {
            "local submission"
        } else {
            "unauthenticated mail"
        };
        let mail_from = envelope.mail_from.trim().to_ascii_lowercase();
        let domain = domain_of(&mail_from)?;
        match self.attribution {
            LocalAttribution::None => None,
            LocalAttribution::SenderDomain => {
                // A directory entry for the domain says what it may send
                // as; without one the domain itself is all there is.
                let (identity, check_identity) = match self.accounts.get(&domain) {
                    Some(identity) => (identity.clone(), true),
                    None => (AccountIdentity::for_domain(&domain), false),
                };
                Some(Sender {
                    account: domain,
                    how: format!("{origin} attributed by sender domain to account"),
                    identity,
                    check_identity,
                })
            }
            LocalAttribution::Map => {
                let (key, account) = self
                    .attribution_map
                    .get_key_value(&mail_from)
                    .or_else(|| self.attribution_map.get_key_value(&domain))?;
                Some(Sender {
                    account: account.to_ascii_lowercase(),
                    how: format!("{origin} attributed by map entry {key} to account"),
                    identity: self.identity_for(account),
                    check_identity: true,
                })
            }
        }
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}
