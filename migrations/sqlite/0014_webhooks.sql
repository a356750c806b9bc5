-- Webhooks (src/model/webhook.rs states the rules). The audit log is the outbox: a dispatch pass
-- turns audit records after webhook_cursor.seq into deliveries, and moves the cursor in the same
-- transaction. A delivery is claimed with a lease (one sender at a time) and retried with back-off
-- until it is delivered or too old. A namespace's webhooks go with the namespace.
CREATE TABLE webhooks (
    id         TEXT    PRIMARY KEY,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    namespace  TEXT REFERENCES namespaces(name) ON DELETE CASCADE,
    created_by TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT    NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
CREATE TABLE webhook_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
);
INSERT INTO webhook_cursor (one, seq) VALUES (1, (SELECT seq FROM audit_head WHERE one = 1));
