-- Online garbage collection (src/domain/gc.rs has the protocol and its invariant).
-- A link's last touch (its creation, a mount, an upload, a HEAD): links nothing references are
-- collected only once they are older than the grace period.
ALTER TABLE repository_blobs ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE repository_blobs SET touched_at = created_at;
-- A blob's last touch (recorded, linked again, an upload of the same bytes about to finish), and
-- whether the collector is deleting its bytes: a sweeping blob cannot be linked.
ALTER TABLE blobs ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE blobs SET touched_at = created_at;
ALTER TABLE blobs ADD COLUMN sweeping INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_sweeping ON blobs(sweeping) WHERE sweeping <> 0;
