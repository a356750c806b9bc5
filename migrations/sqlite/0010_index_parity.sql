-- Indexes PostgreSQL has had from its first migration: tags by the manifest they point at (deleting
-- a manifest cascades to its tags) and uploads by last activity (the expiry sweep).
CREATE INDEX IF NOT EXISTS tags_manifest ON tags(repository_id, manifest_digest);
CREATE INDEX IF NOT EXISTS uploads_updated ON uploads(updated_at);
