-- The scan queue: only the rows that still want a verdict, in the order they are claimed. The
-- claim's filter (`state IN ... OR rescan = 1`) could not use `scans_claimable`, so every claim
-- scanned and sorted the whole table: a registry with 7,500 scanned images spent 0.8 ms of its
-- single writer's time per claim, growing with every push. The predicate must stay identical to
-- the one in `CLAIMABLE` (src/metadata/sql/scans.rs) for the planners to use this index.
DROP INDEX scans_claimable;
CREATE INDEX scans_queue ON scans(created_at, manifest_digest)
    WHERE state IN ('pending', 'scanning') OR rescan = 1;
