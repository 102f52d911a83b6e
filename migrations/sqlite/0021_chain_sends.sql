-- Transactions the hub's wallet signs (channel refunds, x402 settlements), written BEFORE they
-- are broadcast: the row holds the exact signed bytes, so a send interrupted by a crash is
-- re-broadcast (same hash, same nonce) on start and can never pay twice.
CREATE TABLE chain_sends (
    id TEXT PRIMARY KEY,                 -- 'refund:<channel id>', 'x402:<payer>:<nonce>'
    to_address TEXT NOT NULL,            -- who receives the tokens, 0x lower-case
    amount INTEGER NOT NULL CHECK (amount > 0), -- token base units
    nonce INTEGER NOT NULL,                   -- the wallet's account nonce this transaction uses
    tx_hash TEXT NOT NULL UNIQUE,
    raw_tx TEXT NOT NULL,                -- EIP-2718 bytes, 0x hex
    state TEXT NOT NULL DEFAULT 'signed' CHECK (state IN ('signed', 'succeeded', 'reverted')),
    created_at INTEGER NOT NULL,
    settled_at INTEGER
);
CREATE INDEX chain_sends_open ON chain_sends (state);
