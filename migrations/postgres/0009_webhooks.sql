-- Webhooks. (The same change as migrations/sqlite/0014_webhooks.sql; see there for why.)
CREATE TABLE webhooks (
    id         TEXT   PRIMARY KEY,
    url        TEXT   NOT NULL,
    events     TEXT   NOT NULL,
    namespace  TEXT COLLATE "C" REFERENCES namespaces(name) ON DELETE CASCADE,
    created_by TEXT   NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      TEXT   NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    state           TEXT   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_ms      BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
CREATE TABLE webhook_cursor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq BIGINT NOT NULL
);
INSERT INTO webhook_cursor (one, seq) VALUES (1, (SELECT seq FROM audit_head WHERE one = 1));
