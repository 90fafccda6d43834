-- The post-deploy smoke test's own organisation, in every stack (demo data or not): `lifeguard smoke`
-- charges it one credit per deploy, so no customer's or demo org's balance moves, and it starts with
-- enough credits for a billion deploys. A fixed id far above what the identity sequence hands out,
-- so the smoke test can name it (lifeguard.pipeline.smoke.SMOKE_ORG_ID) in every database.
INSERT INTO orgs (id, name, credits) OVERRIDING SYSTEM VALUE
VALUES (2147483647, 'lifeguard-smoke', 1000000000)
ON CONFLICT (id) DO NOTHING;
