-- Who asked for an invoice with Prefer: respond-async: a customer's
-- request makes the customer's own invoice (invoices.drafted_by_customer),
-- as its synchronous POST /invoices does, though the event that makes it
-- comes back from generate-invoice itself. Requests made before this
-- migration count as the merchant's, as they did.
--
-- A refund of an invoice's payment that succeeded and then failed at the
-- gateway (billfn.refund.failed, "reversed"): the money came back, so
-- amount_refunded no longer counts it. A reversal whose success was never
-- seen under its own id has a row of its own (reversed from the start),
-- so a success arriving after it is not counted either.

-- +goose Up
ALTER TABLE invoice_requests ADD COLUMN by_customer boolean NOT NULL DEFAULT false;
ALTER TABLE invoice_refunds ADD COLUMN reversed boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE invoice_refunds DROP COLUMN reversed;
ALTER TABLE invoice_requests DROP COLUMN by_customer;
