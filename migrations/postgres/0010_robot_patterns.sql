-- A robot's `repositories` now holds one pattern per line. Before, a single pattern could contain a
-- line break, which would now read as two patterns and grant more: such robots are revoked (their
-- owners make them again with a list of patterns).
UPDATE robots SET revoked = 1 WHERE position(chr(10) in repositories) > 0 OR position(chr(13) in repositories) > 0;
