-- Record the balance left after each charge, so a replayed idempotency key can answer exactly
-- like the first call did.
ALTER TABLE charges ADD COLUMN balance_after bigint CHECK (balance_after >= 0);
UPDATE charges SET balance_after = 0 WHERE balance_after IS NULL;
ALTER TABLE charges ALTER COLUMN balance_after SET NOT NULL;
