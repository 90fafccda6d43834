-- An idempotency key belongs to the organisation that used it: unique per org, not across all orgs
-- (#31.6). Unique across all orgs, one org's key blocked every other org from using it, and the
-- 409 it caused named the first org's charge. Every existing row already satisfies the new rule
-- (the key alone was unique), so nothing is rewritten; both constraints change in this one
-- transaction, so charges are never without one. On a table too large to index under an ACCESS
-- EXCLUSIVE lock, build the index first with CREATE UNIQUE INDEX CONCURRENTLY in a no-transaction
-- file and attach it with ADD CONSTRAINT ... UNIQUE USING INDEX (docs/migrations.md).
ALTER TABLE charges ADD CONSTRAINT charges_org_id_idempotency_key_key UNIQUE (org_id, idempotency_key);
ALTER TABLE charges DROP CONSTRAINT charges_idempotency_key_key;
