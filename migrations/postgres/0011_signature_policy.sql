-- A namespace's signature policy: its mode (off, warn, require) and its trusted keys (a JSON list
-- of {name, pem}).
CREATE TABLE namespace_signature_policies (
    namespace_id BIGINT PRIMARY KEY REFERENCES namespaces(id) ON DELETE CASCADE,
    mode         TEXT   NOT NULL,
    keys         TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL
);
