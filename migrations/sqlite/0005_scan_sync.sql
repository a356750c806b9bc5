-- A namespace may scan inside the manifest PUT (synchronous mode), waiting at most this long.
ALTER TABLE namespace_scan_policies ADD COLUMN sync_timeout_ms INTEGER;
