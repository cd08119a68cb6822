-- aggregate-report: report_recon keyed by payment first, one index fewer.
--
-- report_recon had three indexes for three needs: its primary key
-- (source, event_id) for uniqueness, (at) for the day's rows (the
-- reconciliation's totals and active payments, LoadRange, a rebuild's
-- delete) and (payment_id, at) for a payment's whole history (the
-- reconciliation's mismatches). An event names one payment, so
-- (payment_id, source, event_id) is as unique as (source, event_id) and
-- also finds a payment's rows: the mismatch query reads the same two to
-- four index entries per payment and checks at on those rows. Nothing
-- looks rows up by (source, event_id) alone: the event log report_events
-- is the dedupe, so an event's row is written once.
--
-- Each payment writes two rows here (its capture on the gateway's side and
-- on the ledger's): 6 -> 4 index entries per payment.

-- +goose Up
ALTER TABLE report_recon DROP CONSTRAINT report_recon_pkey;
ALTER TABLE report_recon ADD PRIMARY KEY (payment_id, source, event_id);
DROP INDEX report_recon_payment_idx;

-- +goose Down
CREATE INDEX report_recon_payment_idx ON report_recon (payment_id, at);
ALTER TABLE report_recon DROP CONSTRAINT report_recon_pkey;
ALTER TABLE report_recon ADD PRIMARY KEY (source, event_id);
