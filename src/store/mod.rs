//! Storage of reports, message content, account state and counters behind
//! traits, with SQLite (default) and PostgreSQL backends and a disk spool.
