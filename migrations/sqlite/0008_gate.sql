-- The quarantine gate decides on what clients would run, not on fields the pusher chose.
--
-- `kind`: 'image' (runnable: scanned with every rule), 'artifact' (its blobs searched for secrets)
-- or 'index'. NULL for manifests stored before: the gate treats them as images until their
-- rescan (queued below) records what they are.
ALTER TABLE manifests ADD COLUMN kind TEXT CHECK (kind IN ('image', 'artifact', 'index'));

-- Set when an image of the repository references the blob, and never cleared while the link
-- lives: such a blob is readable only through an image that passed or was released, never
-- through an artifact that lists it, and it stays blocked after its image is rejected or deleted.
ALTER TABLE repository_blobs ADD COLUMN in_image INTEGER NOT NULL DEFAULT 0 CHECK (in_image IN (0, 1));
UPDATE repository_blobs SET in_image = 1 WHERE EXISTS (
    SELECT 1 FROM manifest_references mr
    JOIN scans s ON s.repository_id = mr.repository_id AND s.manifest_digest = mr.manifest_digest
    WHERE mr.repository_id = repository_blobs.repository_id AND mr.target_digest = repository_blobs.digest
      AND mr.kind = 'blob');

-- Every manifest has a scan record; none is blocked. Those without one (artifacts and indexes
-- under the earlier rule) are scanned now, and every earlier verdict is looked at again by this
-- scanner (each keeps serving until the new one lands).
INSERT INTO scans (repository_id, manifest_digest, state, created_at, updated_at)
SELECT m.repository_id, m.digest, 'pending', m.created_at, m.created_at FROM manifests m
WHERE NOT EXISTS (SELECT 1 FROM scans s WHERE s.repository_id = m.repository_id AND s.manifest_digest = m.digest);
UPDATE scans SET rescan = 1, next_attempt_at = 0, attempts = 0 WHERE state NOT IN ('pending', 'scanning');

-- Fair claims: namespaces take turns, the one served longest ago first (`scan_turns.served` is a
-- counter), so one namespace's flood of pushes cannot hold back another's.
ALTER TABLE scans ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
UPDATE scans SET namespace = (
    SELECT CASE WHEN instr(r.name, '/') > 0 THEN substr(r.name, 1, instr(r.name, '/') - 1) ELSE r.name END
    FROM repositories r WHERE r.id = scans.repository_id);
CREATE TABLE scan_turns (
    namespace TEXT    PRIMARY KEY,
    served    INTEGER NOT NULL
);
INSERT INTO scan_turns (namespace, served) SELECT DISTINCT namespace, 0 FROM scans;
CREATE INDEX scan_turns_order ON scan_turns(served, namespace);
-- The queue index, per namespace. Its predicate must stay identical to the one in `QUEUED`
-- (src/metadata/sql/scans.rs) for the planner to use it.
DROP INDEX scans_queue;
CREATE INDEX scans_queue ON scans(namespace, created_at, manifest_digest)
    WHERE state IN ('pending', 'scanning') OR rescan = 1;
