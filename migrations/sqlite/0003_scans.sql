-- Scan state per (repository, manifest digest), never per tag. A job is claimed with a lease; an
-- expired lease makes it claimable again. `rescan` asks for a new verdict while the current one
-- keeps serving until it lands.

CREATE TABLE scans (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'scanning', 'passed', 'quarantined', 'error', 'released')),
    rescan          INTEGER NOT NULL DEFAULT 0 CHECK (rescan IN (0, 1)),
    findings        TEXT,
    summary         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    released_by     TEXT,
    release_reason  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest),
    FOREIGN KEY (repository_id, manifest_digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX scans_claimable ON scans(state, next_attempt_at);
