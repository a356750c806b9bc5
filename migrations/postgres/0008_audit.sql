-- The audit log. (The same change as migrations/sqlite/0013_audit.sql; see there for why.)
CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq        BIGINT UNIQUE,
    time_ms    BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    client     TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    object     TEXT   NOT NULL,
    namespace  TEXT COLLATE "C",
    outcome    TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    details    TEXT   NOT NULL,
    hash       TEXT
);
CREATE INDEX audit_log_unchained ON audit_log(id) WHERE seq IS NULL;
CREATE INDEX audit_log_time ON audit_log(time_ms);
CREATE INDEX audit_log_namespace ON audit_log(namespace, seq) WHERE namespace IS NOT NULL;
CREATE TABLE audit_head (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    seq        BIGINT NOT NULL,
    hash       TEXT   NOT NULL,
    first_seq  BIGINT NOT NULL,
    first_prev TEXT   NOT NULL,
    mac        TEXT   NOT NULL DEFAULT ''
);
INSERT INTO audit_head (one, seq, hash, first_seq, first_prev) VALUES
    (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
     1, '0000000000000000000000000000000000000000000000000000000000000000');
