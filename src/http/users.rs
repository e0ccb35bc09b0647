//! Who may use the review interface, as stored: the role and the credential
//! record. Shared by `auth` (checking) and `db` (storing); knows neither.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: content, account actions.
    Abuse,
    /// Reports and accounts, without message content or actions.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Abuse => "abuse",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "abuse" => Ok(Role::Abuse),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?} (want abuse or viewer)")),
        }
    }
}

/// A stored credential.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub salt: String,
    pub iterations: i64,
    pub hash: String,
}
