-- Lifecycle: namespace quotas, immutable tags and retention rules, and dedupe-aware usage
-- (src/domain/lifecycle.rs has the rules; src/metadata/sql/lifecycle.rs the queries).

-- One row per namespace that has any lifecycle setting. NULL means "no limit" / "no rule".
CREATE TABLE namespace_settings (
    namespace        TEXT    PRIMARY KEY REFERENCES namespaces(name) ON DELETE CASCADE,
    quota_bytes      INTEGER CHECK (quota_bytes >= 0),
    max_repositories INTEGER CHECK (max_repositories >= 0),
    max_tags         INTEGER CHECK (max_tags >= 0),
    immutable_tags   TEXT,
    retention        TEXT,
    updated_at       INTEGER NOT NULL
);

-- Each link records its repository's namespace, so the counters below never need the
-- repository row (which a cascading delete may already have removed).
ALTER TABLE repository_blobs ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
UPDATE repository_blobs SET namespace = (
    SELECT CASE WHEN instr(r.name, '/') > 0 THEN substr(r.name, 1, instr(r.name, '/') - 1) ELSE r.name END
    FROM repositories r WHERE r.id = repository_blobs.repository_id);

-- A blob counts once per namespace however many of its repositories link it: `links` counts the
-- links, the row exists while it is positive. Its size is added to the namespace's usage when
-- the row appears and taken off when it goes, as rows of `namespace_usage_deltas` (insert-only,
-- so concurrent writers never wait for one hot counter row; the collector folds them into one row
-- per namespace). The triggers below keep both on every path that adds or removes a link (upload,
-- mount, collector, repository delete by cascade); fsck recomputes them.
CREATE TABLE namespace_blobs (
    namespace TEXT    NOT NULL,
    digest    TEXT    NOT NULL,
    size      INTEGER NOT NULL,
    links     INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
);
CREATE TABLE namespace_usage_deltas (
    id        INTEGER PRIMARY KEY,
    namespace TEXT    NOT NULL,
    bytes     INTEGER NOT NULL,
    blobs     INTEGER NOT NULL
);
CREATE INDEX namespace_usage_deltas_namespace ON namespace_usage_deltas(namespace);
INSERT INTO namespace_blobs (namespace, digest, size, links)
    SELECT rb.namespace, rb.digest, b.size, COUNT(*) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
    GROUP BY rb.namespace, rb.digest, b.size;
INSERT INTO namespace_usage_deltas (namespace, bytes, blobs)
    SELECT namespace, SUM(size), COUNT(*) FROM namespace_blobs GROUP BY namespace;

CREATE TRIGGER repository_blobs_counted AFTER INSERT ON repository_blobs BEGIN
    INSERT OR IGNORE INTO namespace_blobs (namespace, digest, size, links)
        SELECT NEW.namespace, NEW.digest, b.size, 0 FROM blobs b WHERE b.digest = NEW.digest;
    UPDATE namespace_blobs SET links = links + 1 WHERE namespace = NEW.namespace AND digest = NEW.digest;
END;
CREATE TRIGGER repository_blobs_uncounted AFTER DELETE ON repository_blobs BEGIN
    UPDATE namespace_blobs SET links = links - 1 WHERE namespace = OLD.namespace AND digest = OLD.digest;
    DELETE FROM namespace_blobs WHERE namespace = OLD.namespace AND digest = OLD.digest AND links <= 0;
END;
CREATE TRIGGER namespace_blobs_added AFTER INSERT ON namespace_blobs BEGIN
    INSERT INTO namespace_usage_deltas (namespace, bytes, blobs) VALUES (NEW.namespace, NEW.size, 1);
END;
CREATE TRIGGER namespace_blobs_removed AFTER DELETE ON namespace_blobs BEGIN
    INSERT INTO namespace_usage_deltas (namespace, bytes, blobs) VALUES (OLD.namespace, -OLD.size, -1);
END;

-- Repositories and tags of a namespace are counted for their limits and the usage endpoint.
ALTER TABLE repositories ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
UPDATE repositories SET namespace =
    CASE WHEN instr(name, '/') > 0 THEN substr(name, 1, instr(name, '/') - 1) ELSE name END;
CREATE INDEX repositories_namespace ON repositories(namespace);
