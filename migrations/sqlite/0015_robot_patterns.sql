-- A robot's `repositories` now holds one pattern per line. Before, a single pattern could contain a
-- line break, which would now read as two patterns and grant more: such robots are revoked (their
-- owners make them again with a list of patterns).
UPDATE robots SET revoked = 1 WHERE instr(repositories, char(10)) > 0 OR instr(repositories, char(13)) > 0;
