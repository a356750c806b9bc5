-- Sessions of the web console (`/ui/`): the same change as
-- migrations/sqlite/0018_console_sessions.sql; see there for why.
CREATE TABLE console_sessions (
    id_hash      TEXT   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_tag TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions(user_id);
CREATE INDEX console_sessions_last_seen ON console_sessions(last_seen_ms);
