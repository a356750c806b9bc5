-- The audit log (src/model/audit.rs states the chain's rules). A record is inserted with no place
-- in the chain (seq and hash NULL); a chaining pass gives records their place in insertion order
-- and moves the head. audit_head has exactly one row: the last chained record, and where the
-- chain starts (records before first_seq were dropped by retention; the first kept one follows
-- first_prev). mac seals the head with the registry's key (src/model/audit.rs).
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    seq        INTEGER UNIQUE,
    time_ms    INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    client     TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    object     TEXT    NOT NULL,
    namespace  TEXT,
    outcome    TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    hash       TEXT
);
CREATE INDEX audit_log_unchained ON audit_log(id) WHERE seq IS NULL;
CREATE INDEX audit_log_time ON audit_log(time_ms);
CREATE INDEX audit_log_namespace ON audit_log(namespace, seq) WHERE namespace IS NOT NULL;
CREATE TABLE audit_head (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    seq        INTEGER NOT NULL,
    hash       TEXT    NOT NULL,
    first_seq  INTEGER NOT NULL,
    first_prev TEXT    NOT NULL,
    mac        TEXT    NOT NULL DEFAULT ''
);
INSERT INTO audit_head (one, seq, hash, first_seq, first_prev) VALUES
    (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
     1, '0000000000000000000000000000000000000000000000000000000000000000');
