-- Sessions of the web console (`/ui/`). The cookie holds a random secret; only its SHA-256 is
-- stored, so a copy of the database does not hold a usable session. A session ends on logout
-- (its row is deleted), when it idles past `auth.console_idle_timeout`, when it is older than
-- `auth.console_max_age`, and when its account is deleted (cascade), disabled or has its password
-- changed (`password_tag`, a hash of the account's password hash, no longer matches).
CREATE TABLE console_sessions (
    id_hash      TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_tag TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions(user_id);
CREATE INDEX console_sessions_last_seen ON console_sessions(last_seen_ms);
