-- Non-custodial channels (spec §6.1–6.2): a ledger channel that mirrors a channel on the
-- escrow contract names it here (bytes32, 0x lower-case hex); NULL for custodial channels.
-- An escrow channel is mirrored once.
ALTER TABLE channels ADD COLUMN escrow_id TEXT;
CREATE UNIQUE INDEX channels_escrow_id ON channels (escrow_id) WHERE escrow_id IS NOT NULL;

-- The depositor's DebitAuthorizations behind the holds and receipts of escrow channels, stored
-- with the hold (same id: the buyer's receiptId) and submitted on-chain (debitChannel) by the
-- collector in nonce order once the hold is captured. One authorization per channel nonce;
-- a row whose hold was released frees its nonce for the next call.
CREATE TABLE escrow_debits (
    hold_id TEXT PRIMARY KEY,              -- the receiptId, 0x + 64 hex; also the hold and receipt nonce
    channel_id TEXT NOT NULL,              -- the ledger channel
    escrow_id TEXT NOT NULL,               -- the escrow channel id
    nonce BIGINT NOT NULL,                -- the channel nonce it was signed for
    amount BIGINT NOT NULL CHECK (amount > 0), -- token base units (micro-USD)
    authorization_json TEXT NOT NULL,      -- the payment_authorization as verified
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'debited', 'failed')),
    tx_hash TEXT,                          -- the debitChannel transaction, once signed
    created_at BIGINT NOT NULL,
    settled_at BIGINT,
    UNIQUE (escrow_id, nonce)
);
CREATE INDEX escrow_debits_open ON escrow_debits (state, escrow_id, nonce);
