-- Lifecycle. (The same change as migrations/sqlite/0012_lifecycle.sql; see there for why.)
CREATE TABLE namespace_settings (
    namespace        TEXT COLLATE "C" PRIMARY KEY REFERENCES namespaces(name) ON DELETE CASCADE,
    quota_bytes      BIGINT CHECK (quota_bytes >= 0),
    max_repositories BIGINT CHECK (max_repositories >= 0),
    max_tags         BIGINT CHECK (max_tags >= 0),
    immutable_tags   TEXT,
    retention        TEXT,
    updated_at       BIGINT NOT NULL
);

ALTER TABLE repository_blobs ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE repository_blobs rb SET namespace = split_part(r.name, '/', 1) FROM repositories r WHERE r.id = rb.repository_id;

CREATE TABLE namespace_blobs (
    namespace TEXT COLLATE "C" NOT NULL,
    digest    TEXT COLLATE "C" NOT NULL,
    size      BIGINT NOT NULL,
    links     BIGINT NOT NULL,
    PRIMARY KEY (namespace, digest)
);
CREATE TABLE namespace_usage_deltas (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace TEXT COLLATE "C" NOT NULL,
    bytes     BIGINT NOT NULL,
    blobs     BIGINT NOT NULL
);
CREATE INDEX namespace_usage_deltas_namespace ON namespace_usage_deltas(namespace);
INSERT INTO namespace_blobs (namespace, digest, size, links)
    SELECT rb.namespace, rb.digest, b.size, COUNT(*) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
    GROUP BY rb.namespace, rb.digest, b.size;
INSERT INTO namespace_usage_deltas (namespace, bytes, blobs)
    SELECT namespace, SUM(size), COUNT(*) FROM namespace_blobs GROUP BY namespace;

CREATE FUNCTION repository_blobs_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO namespace_blobs (namespace, digest, size, links)
            SELECT NEW.namespace, NEW.digest, b.size, 1 FROM blobs b WHERE b.digest = NEW.digest
            ON CONFLICT (namespace, digest) DO UPDATE SET links = namespace_blobs.links + 1;
        RETURN NEW;
    END IF;
    UPDATE namespace_blobs SET links = links - 1 WHERE namespace = OLD.namespace AND digest = OLD.digest;
    DELETE FROM namespace_blobs WHERE namespace = OLD.namespace AND digest = OLD.digest AND links <= 0;
    RETURN OLD;
END $$;
CREATE TRIGGER repository_blobs_counted AFTER INSERT OR DELETE ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION repository_blobs_count();

CREATE FUNCTION namespace_blobs_sum() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO namespace_usage_deltas (namespace, bytes, blobs) VALUES (NEW.namespace, NEW.size, 1);
        RETURN NEW;
    END IF;
    INSERT INTO namespace_usage_deltas (namespace, bytes, blobs) VALUES (OLD.namespace, -OLD.size, -1);
    RETURN OLD;
END $$;
CREATE TRIGGER namespace_blobs_summed AFTER INSERT OR DELETE ON namespace_blobs
    FOR EACH ROW EXECUTE FUNCTION namespace_blobs_sum();

ALTER TABLE repositories ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE repositories SET namespace = split_part(name, '/', 1);
CREATE INDEX repositories_namespace ON repositories(namespace);
