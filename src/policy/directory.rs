//! The accounts directory: login → contact address, domain, sensitivity,
//! limit overrides and allowed sender identities, importable from CSV.
//! Unknown logins get defaults derived from the login itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::envelope::domain_of;

/// Anti-spam sensitivity of an account or domain: the same levels as
/// `scores/actions.toml`, whose reject lines they select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Low,
    Medium,
    High,
}

/// One account of the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEntry {
    /// SASL login, lower-case.
    pub login: String,
    /// Where suspension notices go.
    pub contact: Option<String>,
    pub domain: Option<String>,
    /// Moves the account's reject threshold (`scores/actions.toml` levels);
    /// `None` leaves it to `[sensitivity.senders]` there.
    pub sensitivity: Option<Sensitivity>,
    pub max_rcpts_per_message: Option<u64>,
    pub daily_external_rcpts: Option<u64>,
    pub max_messages: Option<u64>,
    /// Sender addresses (or `@domain`) this login may use besides its own.
    pub identities: Vec<String>,
}

impl AccountEntry {
    /// Defaults for a login not in the directory: a login that is an
    /// address is its own contact and names its domain.
    pub fn unknown(login: &str) -> AccountEntry {
        let login = login.trim().to_ascii_lowercase();
        AccountEntry {
            contact: login.contains('@').then(|| login.clone()),
            domain: domain_of(&login),
            login,
            ..AccountEntry::default()
        }
    }
}

/// A line of the CSV that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct CsvError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// All known accounts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    accounts: BTreeMap<String, AccountEntry>,
}

/// The CSV columns, in the order of the header line.
pub const CSV_HEADER: &str =
    "login,contact,domain,sensitivity,max_rcpts_per_message,daily_external_rcpts,max_messages,identities";

impl Directory {
    /// The entry for a login, or the defaults for an unknown one.
    pub fn get(&self, login: &str) -> AccountEntry {
        let key = login.trim().to_ascii_lowercase();
        self.accounts
            .get(&key)
            .cloned()
            .unwrap_or_else(|| AccountEntry::unknown(&key))
    }

    pub fn contains(&self, login: &str) -> bool {
        self.accounts
            .contains_key(&login.trim().to_ascii_lowercase())
    }

    pub fn insert(&mut self, entry: AccountEntry) {
        self.accounts.insert(entry.login.clone(), entry);
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Logins whose sensitivity the directory sets, for the scoring engine.
    pub fn sensitivities(&self) -> std::collections::HashMap<String, Sensitivity> {
        self.accounts
            .iter()
            .filter_map(|(login, e)| e.sensitivity.map(|s| (login.clone(), s)))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &AccountEntry> {
        self.accounts.values()
    }

    pub fn load_csv(path: &Path) -> Result<Directory, Vec<CsvError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![CsvError {
                file: path.display().to_string(),
                line: 0,
                message: format!("cannot read: {e}"),
            }]
        })?;
        Directory::parse_csv(&path.display().to_string(), &text)
    }

    /// Parse CSV text with a header line naming the columns (any order;
    /// `login` required). Identities are separated by spaces or `;`.
    /// Every bad line is reported.
    pub fn parse_csv(file: &str, text: &str) -> Result<Directory, Vec<CsvError>> {
        let mut errors = Vec::new();
        let mut dir = Directory::default();
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let Some((_, header)) = lines.next() else {
            return Ok(dir);
        };
        let columns: Vec<String> = split_csv(header)
            .into_iter()
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        let known: Vec<&str> = CSV_HEADER.split(',').collect();
        for c in &columns {
            if !known.contains(&c.as_str()) {
                errors.push(CsvError {
                    file: file.into(),
                    line: 1,
                    message: format!("unknown column {c:?} (known: {CSV_HEADER})"),
                });
            }
        }
        if !columns.iter().any(|c| c == "login") {
            errors.push(CsvError {
                file: file.into(),
                line: 1,
                message: "no login column".into(),
            });
            return Err(errors);
        }
        for (index, line) in lines {
            let n = index + 1;
            let mut entry = AccountEntry::default();
            let mut err = |message: String| {
                errors.push(CsvError {
                    file: file.into(),
                    line: n,
                    message,
                })
            };
            for (column, value) in columns.iter().zip(split_csv(line)) {
                let value = value.trim();
                if value.is_empty() {
                    continue;
                }
                let number = |v: &str| {
                    v.parse::<u64>()
                        .map_err(|_| format!("{column}: {v:?} is not a number"))
                };
                match column.as_str() {
                    "login" => entry.login = value.to_ascii_lowercase(),
                    "contact" => {
                        if value.contains('@') {
                            entry.contact = Some(value.to_string())
                        } else {
                            err(format!("contact {value:?} is not an address"))
                        }
                    }
                    "domain" => entry.domain = Some(value.to_ascii_lowercase()),
                    "sensitivity" => match value.to_ascii_lowercase().as_str() {
                        "low" => entry.sensitivity = Some(Sensitivity::Low),
                        "medium" => entry.sensitivity = Some(Sensitivity::Medium),
                        "high" => entry.sensitivity = Some(Sensitivity::High),
                        _ => err(format!("sensitivity {value:?} (want low, medium or high)")),
                    },
                    "max_rcpts_per_message" => match number(value) {
                        Ok(v) => entry.max_rcpts_per_message = Some(v),
                        Err(e) => err(e),
                    },
                    "daily_external_rcpts" => match number(value) {
                        Ok(v) => entry.daily_external_rcpts = Some(v),
                        Err(e) => err(e),
                    },
                    "max_messages" => match number(value) {
                        Ok(v) => entry.max_messages = Some(v),
                        Err(e) => err(e),
                    },
                    "identities" => {
                        entry.identities = value
                            .split([' ', ';'])
                            .filter(|s| !s.is_empty())
                            .map(str::to_ascii_lowercase)
                            .collect()
                    }
                    _ => {}
                }
            }
            if entry.login.is_empty() {
                err("empty login".into());
                continue;
            }
            if entry.domain.is_none() {
                entry.domain = domain_of(&entry.login);
            }
            dir.insert(entry);
        }
        if errors.is_empty() {
            Ok(dir)
        } else {
            Err(errors)
        }
    }
}

/// Split one CSV line: commas separate, double quotes protect commas,
/// `""` inside quotes is a quote.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_import_and_defaults() {
        let text = "login,contact,sensitivity,daily_external_rcpts,identities\n\
                    Alice@Example.com,owner@example.net,high,500,\"sales@example.com;@shop.example.com\"\n\
                    bob@example.com,,low,,\n";
        let d = Directory::parse_csv("a.csv", text).unwrap();
        assert_eq!(d.len(), 2);
        let a = d.get("alice@example.com");
        assert_eq!(a.contact.as_deref(), Some("owner@example.net"));
        assert_eq!(a.domain.as_deref(), Some("example.com"));
        assert_eq!(a.sensitivity, Some(Sensitivity::High));
        assert_eq!(a.daily_external_rcpts, Some(500));
        let u = d.get("carol@example.org");
        assert_eq!(u.contact.as_deref(), Some("carol@example.org"));
        assert_eq!(u.sensitivity, None);
    }

    #[test]
    fn csv_errors_name_lines() {
        let text = "login,contact,sensitivity\na@b.c,nobody,extreme\n,x@y.z,low\n";
        let e = Directory::parse_csv("a.csv", text).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|e| e.line >= 2));
        assert_eq!(e[2].line, 3);
    }
}
