-- What was issued before a credential changed stops working at once.
--
-- `valid_after_ms`: tokens (access and refresh) issued to the account at or before this time are
-- refused. Bumped when a password changes, a robot's secret is rotated, a role is set or removed,
-- and for every member when their namespace is deleted. Tokens carry the account's id too, so a
-- new account under a deleted one's name does not inherit its tokens.
ALTER TABLE users ADD COLUMN valid_after_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE robots ADD COLUMN valid_after_ms INTEGER NOT NULL DEFAULT 0;
-- A personal token created with another one: revoking the parent revokes it.
ALTER TABLE personal_tokens ADD COLUMN parent_id TEXT;
-- Stamps that are not an account's: `anonymous` is bumped when a namespace stops being public.
CREATE TABLE stamps (
    name     TEXT    PRIMARY KEY,
    value_ms INTEGER NOT NULL
);
-- Who opened an upload session, so that open sessions can be capped per principal.
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX uploads_owner ON uploads(owner);
CREATE INDEX uploads_repository ON uploads(repository);
-- Login failures are now counted per (account, address) and per address for unknown accounts;
-- the old keys (per account alone, per address alone) mean nothing any more.
DELETE FROM login_failures;
-- The time of the failure before the last one: an attempt is counted before its check, and the
-- lock-out runs from the attempt before it.
ALTER TABLE login_failures ADD COLUMN prev_at_ms INTEGER NOT NULL DEFAULT 0;
