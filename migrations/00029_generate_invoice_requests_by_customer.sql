-- Who asked for an invoice with Prefer: respond-async: a customer's
-- request makes the customer's own invoice (invoices.drafted_by_customer),
-- as its synchronous POST /invoices does, though the event that makes it
-- comes back from generate-invoice itself. Requests made before this
-- migration count as the merchant's, as they did.

-- +goose Up
ALTER TABLE invoice_requests ADD COLUMN by_customer boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE invoice_requests DROP COLUMN by_customer;
