-- The proven sender of an on-chain deposit (AIMarket-Payer-Proof/v1): refunds go back to it.
-- NULL for demo channels.
ALTER TABLE channels ADD COLUMN payer TEXT;
