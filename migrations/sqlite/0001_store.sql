-- Reports, their content and recipients; account state, unblock history,
-- audit log, notification outbox, volume counters. Times are Unix epoch
-- milliseconds (INTEGER) so both backends compare them the same way.

CREATE TABLE reports (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    account     TEXT,
    client_ip   TEXT,
    client_host TEXT,
    helo        TEXT,
    auth_login  TEXT,
    mail_from   TEXT NOT NULL,
    rcpt_count  INTEGER NOT NULL,
    queue_id    TEXT,
    hdr_from    TEXT,
    hdr_to      TEXT,
    subject     TEXT,
    message_id  TEXT,
    hdr_date    TEXT,
    score       REAL NOT NULL,
    tier        TEXT,
    action      TEXT NOT NULL,
    total_us    INTEGER NOT NULL,
    envelope    TEXT NOT NULL,
    report      TEXT NOT NULL
);
CREATE INDEX reports_created ON reports (created_at, id);
CREATE INDEX reports_account ON reports (account, created_at, id);
CREATE INDEX reports_tier ON reports (tier, created_at);
CREATE INDEX reports_action ON reports (action, created_at);
CREATE INDEX reports_score ON reports (score);
CREATE INDEX reports_queue_id ON reports (queue_id);
CREATE INDEX reports_message_id ON reports (message_id);

CREATE TABLE report_rcpts (
    report_id  TEXT NOT NULL,
    rcpt       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (report_id, rcpt)
);
CREATE INDEX report_rcpts_rcpt ON report_rcpts (rcpt, report_id);
CREATE INDEX report_rcpts_created ON report_rcpts (created_at);

CREATE TABLE report_content (
    report_id   TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    compression TEXT NOT NULL,
    raw_size    INTEGER NOT NULL,
    data        BLOB NOT NULL
);
CREATE INDEX report_content_created ON report_content (created_at);

CREATE TABLE account_state (
    account    TEXT PRIMARY KEY NOT NULL,
    status     TEXT NOT NULL,
    since      INTEGER NOT NULL,
    tier       TEXT,
    report_id  TEXT,
    reason     TEXT,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
);
CREATE INDEX account_state_status ON account_state (status, since);

CREATE TABLE account_unblocks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account      TEXT NOT NULL,
    at           INTEGER NOT NULL,
    by_whom      TEXT NOT NULL,
    self_service BOOLEAN NOT NULL,
    previous     TEXT NOT NULL,
    reason       TEXT
);
CREATE INDEX account_unblocks_account ON account_unblocks (account, at);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    account TEXT,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (account, at);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at      INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (done_at, next_attempt_at);

CREATE TABLE counters (
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX counters_window ON counters (window_start);

CREATE TABLE counter_members (
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    member       TEXT NOT NULL,
    PRIMARY KEY (key, window_start, member)
);
CREATE INDEX counter_members_window ON counter_members (window_start);
