-- What was issued before a credential changed stops working at once.
-- (The same change as migrations/sqlite/0009_sessions.sql; see there for why.)
ALTER TABLE users ADD COLUMN valid_after_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE robots ADD COLUMN valid_after_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE personal_tokens ADD COLUMN parent_id TEXT;
CREATE TABLE stamps (
    name     TEXT   PRIMARY KEY,
    value_ms BIGINT NOT NULL
);
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX uploads_owner ON uploads(owner);
CREATE INDEX uploads_repository ON uploads(repository);
DELETE FROM login_failures;
-- The time of the failure before the last one: an attempt is counted before its check, and the
-- lock-out runs from the attempt before it.
ALTER TABLE login_failures ADD COLUMN prev_at_ms BIGINT NOT NULL DEFAULT 0;
