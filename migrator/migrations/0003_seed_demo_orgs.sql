-- Demo data: two organisations with credits and a few invoices (idempotent by name).
INSERT INTO orgs (name, credits)
SELECT v.name, v.credits FROM (VALUES ('acme', 1000), ('globex', 50)) AS v(name, credits)
WHERE NOT EXISTS (SELECT 1 FROM orgs o WHERE o.name = v.name);

INSERT INTO invoices (org_id, amount, issued_at)
SELECT o.id, v.amount, now() - v.age
FROM orgs o
JOIN (VALUES ('acme', 1200, interval '30 days'), ('acme', 800, interval '1 day'), ('globex', 300, interval '2 days'))
     AS v(name, amount, age) ON v.name = o.name;
