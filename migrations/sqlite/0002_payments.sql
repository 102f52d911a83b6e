-- Payments ledger: channels, holds, receipts, invocation records, idempotency records.
-- Money is INTEGER micro-dollars (never a float); timestamps are unix milliseconds; JSON is
-- TEXT. Mirrored in migrations/postgres/0002_payments.sql.

CREATE TABLE channels (
    id TEXT PRIMARY KEY,                              -- ch_<32 hex>
    secret_sha256 TEXT NOT NULL,                      -- hex SHA-256 of the secret; the secret is never stored
    secret_required INTEGER NOT NULL CHECK (secret_required IN (0, 1)),
    deposit INTEGER NOT NULL CHECK (deposit > 0),
    used INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),   -- captured debits
    held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),   -- reserved by calls in flight
    invocations INTEGER NOT NULL DEFAULT 0,
    token TEXT NOT NULL,
    chain TEXT NOT NULL,
    -- A transaction funds one channel, ever. NULL for demo channels opened without a hash.
    tx_hash TEXT UNIQUE,
    verifier TEXT NOT NULL,                           -- 'demo' or 'evm'
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    closed_at INTEGER,
    settle_tx_hash TEXT,
    CHECK (used + held <= deposit)
);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,                              -- caller-chosen, e.g. the receipt nonce
    channel_id TEXT NOT NULL REFERENCES channels (id),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'captured', 'released')),
    created_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,                     -- after this the hold counts as abandoned
    settled_at INTEGER
);

CREATE INDEX holds_channel ON holds (channel_id);
CREATE INDEX holds_open ON holds (lease_until) WHERE state = 'held';

-- Every receipt this hub signs (client, routing and rejection receipts).
CREATE TABLE receipts (
    nonce TEXT PRIMARY KEY,
    receipt TEXT NOT NULL,                            -- the signed JSON as issued
    signer TEXT NOT NULL,                             -- base64 Ed25519 key of the signer
    channel_id TEXT,
    hold_id TEXT,
    charged INTEGER,                                  -- micro-dollars debited for it, if any
    created_at INTEGER NOT NULL
);

CREATE INDEX receipts_channel ON receipts (channel_id) WHERE channel_id IS NOT NULL;

-- Outcomes of routed invocations, for reputation and live stats.
CREATE TABLE invocations (
    id INTEGER PRIMARY KEY,
    peer_url TEXT NOT NULL,
    origin TEXT NOT NULL,
    product_id TEXT NOT NULL,
    capability_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    success INTEGER NOT NULL CHECK (success IN (0, 1)),
    latency_ms INTEGER NOT NULL,
    price INTEGER NOT NULL,                           -- micro-dollars
    channel_id TEXT,
    ts INTEGER NOT NULL
);

CREATE INDEX invocations_peer_ts ON invocations (peer_url, ts);
CREATE INDEX invocations_ts ON invocations (ts);

-- Idempotency-Key records: the first answer to (client, key), replayed for 24 h.
CREATE TABLE idempotency_keys (
    client TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status INTEGER,
    response BLOB,                                    -- the body bytes as first sent
    headers TEXT,                                     -- JSON array of [name, value]
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (client, idem_key)
);

CREATE INDEX idempotency_created ON idempotency_keys (created_at);
