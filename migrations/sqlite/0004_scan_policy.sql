-- A release may expire; a namespace may override the global scan rules.
ALTER TABLE scans ADD COLUMN release_until INTEGER;

CREATE TABLE namespace_scan_policies (
    namespace_id INTEGER PRIMARY KEY REFERENCES namespaces(id) ON DELETE CASCADE,
    rules        TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL
);
