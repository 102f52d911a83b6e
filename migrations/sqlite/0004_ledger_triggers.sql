-- The paid invoke's two ledger writes as one statement each, on SQLite only.
--
-- Each statement through sqlx costs a hop to the connection's worker thread; a hold was five
-- (read, BEGIN IMMEDIATE, reserve, insert, COMMIT) and a capture five more, which made the
-- ledger the largest share of a channel-funded call. With these triggers the hold is one
-- guarded INSERT INTO holds and the capture one INSERT INTO receipts; SQLite runs a statement
-- and its triggers atomically under the write lock, so the effects below can never happen
-- without the row that caused them, nor the row without them. PostgreSQL keeps explicit
-- transactions (hub/src/payments/holds.rs): there is no worker hop to save.

-- A new hold reserves its amount. The INSERT that creates it is guarded (open, unexpired,
-- enough balance); the channel's CHECK (used + held <= deposit) stays the backstop.
CREATE TRIGGER holds_reserve AFTER INSERT ON holds
BEGIN
    UPDATE channels SET held = held + NEW.amount WHERE id = NEW.channel_id;
END;

-- A receipt stored for a hold captures it: the hold becomes `captured` and the channel's
-- held amount turns into used. Receipts without a hold (free calls, rejections) are untouched.
CREATE TRIGGER receipts_capture AFTER INSERT ON receipts
WHEN NEW.hold_id IS NOT NULL
BEGIN
    UPDATE holds SET state = 'captured', settled_at = NEW.created_at
        WHERE id = NEW.hold_id AND state = 'held' AND channel_id = NEW.channel_id
        AND amount = NEW.charged;
    SELECT RAISE(ABORT, 'receipt for a hold that is not held') WHERE changes() <> 1;
    UPDATE channels SET held = held - NEW.charged, used = used + NEW.charged,
        invocations = invocations + 1
        WHERE id = NEW.channel_id;
END;
