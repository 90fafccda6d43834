-- The sample app: organisations with a credit balance, their invoices, and credit charges.
CREATE TABLE orgs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text   NOT NULL,
    credits    bigint NOT NULL DEFAULT 0 CHECK (credits >= 0)
);

CREATE TABLE invoices (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     bigint      NOT NULL REFERENCES orgs (id),
    amount     bigint      NOT NULL CHECK (amount >= 0),
    issued_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_org_issued ON invoices (org_id, issued_at DESC);

CREATE TABLE charges (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint      NOT NULL REFERENCES orgs (id),
    amount          bigint      NOT NULL CHECK (amount > 0),
    idempotency_key text        NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charges_org ON charges (org_id);
