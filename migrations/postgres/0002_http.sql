-- Credentials of the review API and pages. Secrets are never stored, only
-- a salted, iterated SHA-256 of them.
CREATE TABLE http_users (
    name       TEXT PRIMARY KEY NOT NULL,
    role       TEXT NOT NULL,
    salt       TEXT NOT NULL,
    iterations BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
