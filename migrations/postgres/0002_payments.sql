-- Payments ledger: channels, holds, receipts, invocation records, idempotency records.
-- Money is BIGINT micro-dollars (never a float); timestamps are unix milliseconds; JSON is
-- TEXT. Mirrored in migrations/sqlite/0002_payments.sql.

CREATE TABLE channels (
    id TEXT PRIMARY KEY,                              -- ch_<32 hex>
    secret_sha256 TEXT NOT NULL,                      -- hex SHA-256 of the secret; the secret is never stored
    secret_required BOOLEAN NOT NULL,
    deposit BIGINT NOT NULL CHECK (deposit > 0),
    used BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),   -- captured debits
    held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),   -- reserved by calls in flight
    invocations BIGINT NOT NULL DEFAULT 0,
    token TEXT NOT NULL,
    chain TEXT NOT NULL,
    -- A transaction funds one channel, ever. NULL for demo channels opened without a hash.
    tx_hash TEXT UNIQUE,
    verifier TEXT NOT NULL,                           -- 'demo' or 'evm'
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT,
    settle_tx_hash TEXT,
    CHECK (used + held <= deposit)
);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,                              -- caller-chosen, e.g. the receipt nonce
    channel_id TEXT NOT NULL REFERENCES channels (id),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'captured', 'released')),
    created_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,                     -- after this the hold counts as abandoned
    settled_at BIGINT
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
    charged BIGINT,                                  -- micro-dollars debited for it, if any
    created_at BIGINT NOT NULL
);

CREATE INDEX receipts_channel ON receipts (channel_id) WHERE channel_id IS NOT NULL;

-- Outcomes of routed invocations, for reputation and live stats.
CREATE TABLE invocations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    peer_url TEXT NOT NULL,
    origin TEXT NOT NULL,
    product_id TEXT NOT NULL,
    capability_id TEXT NOT NULL,
    status BIGINT NOT NULL,
    success BOOLEAN NOT NULL,
    latency_ms BIGINT NOT NULL,
    price BIGINT NOT NULL,                           -- micro-dollars
    channel_id TEXT,
    ts BIGINT NOT NULL
);

CREATE INDEX invocations_peer_ts ON invocations (peer_url, ts);
CREATE INDEX invocations_ts ON invocations (ts);

-- Idempotency-Key records: the first answer to (client, key), replayed for 24 h.
CREATE TABLE idempotency_keys (
    client TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    status BIGINT,
    response BYTEA,                                   -- the body bytes as first sent
    headers TEXT,                                     -- JSON array of [name, value]
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (client, idem_key)
);

CREATE INDEX idempotency_created ON idempotency_keys (created_at);
