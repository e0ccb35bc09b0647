//! `outscore user add|remove|list`: credentials of the review interface.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::http;
use crate::store::{self};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user (or replace its secret) and print the secret once.
    Add {
        name: String,
        /// `abuse` (everything) or `viewer` (reports without content, no actions).
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Remove a user.
    Remove { name: String },
    /// List users and roles.
    List,
}

pub async fn user_command(config: Config, command: UserCmd) -> anyhow::Result<ExitCode> {
    let db = store::open(&config)
        .await
        .context("cannot open the store")?;
    match command {
        UserCmd::Add { name, role } => {
            let role: http::Role = role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            if !http::auth::valid_user_name(&name) {
                anyhow::bail!("user name must be 1-64 letters, digits or .-_@, got {name:?}");
            }
            let (record, secret) = http::auth::new_credential(&name, role);
            http::db::put_user(&db, &record).await?;
            println!("user {name} ({role}) saved; this secret is shown only once:");
            println!("  password (login page): {secret}");
            println!("  API token:             Authorization: Bearer {name}:{secret}");
        }
        UserCmd::Remove { name } => {
            if !http::db::delete_user(&db, &name).await? {
                eprintln!("outscore: no user {name:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("user {name} removed (its sessions end at the next restart)");
        }
        UserCmd::List => {
            for (name, role) in http::db::users(&db).await? {
                println!("{name}\t{role}");
            }
        }
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}
