-- Who made a draft: a customer may change and finalize only the drafts it
-- made itself (POST /invoices with its own token); a draft an
-- administrator or a service made for its account is the merchant's bill,
-- which the customer reads but does not rewrite (billing.mayChangeDraft).
-- Drafts made before this migration count as the merchant's.

-- +goose Up
ALTER TABLE invoices ADD COLUMN drafted_by_customer boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE invoices DROP COLUMN drafted_by_customer;
