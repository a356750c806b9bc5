-- The quarantine gate decides on what clients would run, not on fields the pusher chose.
-- (The same change as migrations/sqlite/0008_gate.sql; see there for why.)
ALTER TABLE manifests ADD COLUMN kind TEXT CHECK (kind IN ('image', 'artifact', 'index'));

ALTER TABLE repository_blobs ADD COLUMN in_image BIGINT NOT NULL DEFAULT 0 CHECK (in_image IN (0, 1));
UPDATE repository_blobs SET in_image = 1 WHERE EXISTS (
    SELECT 1 FROM manifest_references mr
    JOIN scans s ON s.repository_id = mr.repository_id AND s.manifest_digest = mr.manifest_digest
    WHERE mr.repository_id = repository_blobs.repository_id AND mr.target_digest = repository_blobs.digest
      AND mr.kind = 'blob');

INSERT INTO scans (repository_id, manifest_digest, state, created_at, updated_at)
SELECT m.repository_id, m.digest, 'pending', m.created_at, m.created_at FROM manifests m
WHERE NOT EXISTS (SELECT 1 FROM scans s WHERE s.repository_id = m.repository_id AND s.manifest_digest = m.digest);
UPDATE scans SET rescan = 1, next_attempt_at = 0, attempts = 0 WHERE state NOT IN ('pending', 'scanning');

ALTER TABLE scans ADD COLUMN namespace TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE scans SET namespace = (SELECT split_part(r.name, '/', 1) FROM repositories r WHERE r.id = scans.repository_id);
CREATE TABLE scan_turns (
    namespace TEXT COLLATE "C" PRIMARY KEY,
    served    BIGINT NOT NULL
);
INSERT INTO scan_turns (namespace, served) SELECT DISTINCT namespace, 0 FROM scans;
CREATE INDEX scan_turns_order ON scan_turns(served, namespace);
DROP INDEX scans_queue;
CREATE INDEX scans_queue ON scans(namespace, created_at, manifest_digest)
    WHERE state IN ('pending', 'scanning') OR rescan = 1;
