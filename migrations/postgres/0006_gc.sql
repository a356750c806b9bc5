-- Online garbage collection. (The same change as migrations/sqlite/0011_gc.sql; see there for why.)
ALTER TABLE repository_blobs ADD COLUMN touched_at BIGINT NOT NULL DEFAULT 0;
UPDATE repository_blobs SET touched_at = created_at;
ALTER TABLE blobs ADD COLUMN touched_at BIGINT NOT NULL DEFAULT 0;
UPDATE blobs SET touched_at = created_at;
ALTER TABLE blobs ADD COLUMN sweeping INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_sweeping ON blobs(sweeping) WHERE sweeping <> 0;
