-- Identity and access: users, namespaces with roles, robot accounts, personal access tokens.
-- Secrets are stored hashed only: passwords with argon2id, random tokens with SHA-256.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL
);

CREATE TABLE namespaces (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    public     INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    created_at INTEGER NOT NULL
);

CREATE TABLE memberships (
    namespace_id INTEGER NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('owner', 'maintainer', 'developer', 'reader')),
    PRIMARY KEY (namespace_id, user_id)
);

CREATE TABLE robots (
    id           INTEGER PRIMARY KEY,
    namespace_id INTEGER NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    username     TEXT    NOT NULL UNIQUE,
    secret_hash  TEXT    NOT NULL,
    actions      TEXT    NOT NULL,
    repositories TEXT,
    expires_at   INTEGER NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    last_used_at INTEGER,
    created_at   INTEGER NOT NULL,
    UNIQUE (namespace_id, name)
);

CREATE TABLE personal_tokens (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    secret_hash  TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    last_used_at INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE INDEX personal_tokens_user ON personal_tokens(user_id);
