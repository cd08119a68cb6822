-- generate-invoice: fewer index and trigger writes per invoice line. The
-- batch path inserts ten lines per invoice; each line paid for a uuid
-- primary-key index, a (invoice_id, position) index and a foreign-key
-- trigger that locks the parent invoice row. Lines are only ever written by
-- generate-invoice together with their invoice, in one transaction, and
-- invoices are never deleted, so the foreign key guarded nothing the code
-- does not; (invoice_id, position) becomes the primary key (reads fetch an
-- invoice's lines in order) and the line id stays a unique UUIDv7 value
-- without an index of its own. The due-date index served no query (the
-- overdue sweep has its own partial index).

-- +goose Up
ALTER TABLE invoice_line_items DROP CONSTRAINT invoice_line_items_invoice_id_fkey;
ALTER TABLE invoice_line_items DROP CONSTRAINT invoice_line_items_pkey;
ALTER TABLE invoice_line_items DROP CONSTRAINT invoice_line_items_invoice_id_position_key;
ALTER TABLE invoice_line_items ADD CONSTRAINT invoice_line_items_pkey PRIMARY KEY (invoice_id, position);
DROP INDEX invoices_due_date_idx;

-- +goose Down
CREATE INDEX invoices_due_date_idx ON invoices (due_date);
ALTER TABLE invoice_line_items DROP CONSTRAINT invoice_line_items_pkey;
ALTER TABLE invoice_line_items ADD CONSTRAINT invoice_line_items_invoice_id_position_key UNIQUE (invoice_id, position);
ALTER TABLE invoice_line_items ADD CONSTRAINT invoice_line_items_pkey PRIMARY KEY (id);
ALTER TABLE invoice_line_items ADD CONSTRAINT invoice_line_items_invoice_id_fkey
    FOREIGN KEY (invoice_id) REFERENCES invoices (id) ON DELETE CASCADE;
