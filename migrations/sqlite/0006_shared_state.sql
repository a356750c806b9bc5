-- Named leases for background work that one replica at a time does (the upload sweep; later GC):
-- the holder keeps it until `expires_at`; after that any replica may take it over.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Failed logins per key (`account:NAME`, `client:ADDRESS`), so that throttling holds across all
-- replicas: a guesser gains nothing by spreading attempts over them. Times in milliseconds.
CREATE TABLE login_failures (
    key        TEXT    PRIMARY KEY,
    failures   INTEGER NOT NULL,
    last_at_ms INTEGER NOT NULL
);
CREATE INDEX login_failures_last ON login_failures(last_at_ms);
