-- Portcullis metadata, PostgreSQL. Forward-only. The same tables as migrations/sqlite (0001-0005
-- together), so one set of queries serves both engines: every number is BIGINT, booleans are
-- 0/1 BIGINTs, and names sort bytewise (COLLATE "C"), as SQLite and the OCI spec's lexical order do.

CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- A blob recorded here has verified bytes at its content address in the object store.
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL CHECK (size >= 0),
    created_at  BIGINT NOT NULL
);

-- The link that makes a blob readable in a repository.
CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE manifests (
    repository_id BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    subject       TEXT COLLATE "C",
    annotations   TEXT,
    size          BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

-- What each manifest references (config, layers, child manifests): for checks, gating and GC.
CREATE TABLE manifest_references (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    target_digest   TEXT COLLATE "C" NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, target_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_references_target ON manifest_references(repository_id, target_digest);

CREATE TABLE tags (
    repository_id   BIGINT NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX tags_manifest ON tags(repository_id, manifest_digest);

-- Upload sessions; the repository row is only created when a blob lands. Any replica continues a
-- session: its parts are rows here and objects in the shared store.
CREATE TABLE uploads (
    id          TEXT COLLATE "C" PRIMARY KEY,
    repository  TEXT COLLATE "C" NOT NULL,
    size        BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads(updated_at);

CREATE TABLE upload_parts (
    upload_id   TEXT COLLATE "C" NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start       BIGINT NOT NULL,
    part_id     TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    PRIMARY KEY (upload_id, start)
);

-- Identity and access. Secrets are stored hashed only: passwords with argon2id, random tokens with SHA-256.
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    admin         BIGINT NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    disabled      BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    BIGINT NOT NULL
);

CREATE TABLE namespaces (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    public     BIGINT NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    namespace_id BIGINT NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role         TEXT   NOT NULL CHECK (role IN ('owner', 'maintainer', 'developer', 'reader')),
    PRIMARY KEY (namespace_id, user_id)
);

CREATE TABLE robots (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace_id BIGINT NOT NULL REFERENCES namespaces(id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_hash  TEXT   NOT NULL,
    actions      TEXT   NOT NULL,
    repositories TEXT,
    expires_at   BIGINT NOT NULL,
    revoked      BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    last_used_at BIGINT,
    created_at   BIGINT NOT NULL,
    UNIQUE (namespace_id, name)
);

CREATE TABLE personal_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    secret_hash  TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked      BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    last_used_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX personal_tokens_user ON personal_tokens(user_id);

-- Scan state per (repository, manifest digest), never per tag. A job is claimed with a lease; an
-- expired lease makes it claimable again, by any replica.
CREATE TABLE scans (
    repository_id   BIGINT NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('pending', 'scanning', 'passed', 'quarantined', 'error', 'released')),
    rescan          BIGINT NOT NULL DEFAULT 0 CHECK (rescan IN (0, 1)),
    findings        TEXT,
    summary         TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    lease_until     BIGINT,
    next_attempt_at BIGINT NOT NULL DEFAULT 0,
    released_by     TEXT,
    release_reason  TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    release_until   BIGINT,
    PRIMARY KEY (repository_id, manifest_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX scans_claimable ON scans(state, next_attempt_at);

CREATE TABLE namespace_scan_policies (
    namespace_id    BIGINT PRIMARY KEY REFERENCES namespaces(id) ON DELETE CASCADE,
    rules           TEXT   NOT NULL,
    updated_at      BIGINT NOT NULL,
    sync_timeout_ms BIGINT
);

