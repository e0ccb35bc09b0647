//! Sender authentication facts that need the network or files: SPF and the
//! DMARC policy over DNS ([`spf`]), and the accounts directory of allowed
//! identities with the attribution of local submissions ([`accounts`]).
//! The pipeline gathers these before scoring and hands them to
//! `rules::identity` as data. Knows nothing of milter, scoring or store.

pub mod accounts;
pub mod cache;
pub mod identity;
pub mod spf;
