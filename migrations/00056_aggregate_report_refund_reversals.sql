-- aggregate-report: refunds that fail after they succeeded.
--
-- capture-payment reports a refund that succeeded and then failed at the
-- gateway (Stripe: the card was closed; the money is back in the
-- merchant's balance) as billfn.refund.failed, and posts its reversal
-- SYS-CLEARING → what the refund drew on (metadata.kind refund_reversal).
-- aggregate-report counted the refund as succeeded and again as failed,
-- kept its gateway-side reconciliation entry, and ignored the posting: the
-- reports went on showing the money as refunded.
--
-- report_refunds remembers, per refund, when it succeeded and when it
-- failed (and by which event), so a failure after a success is counted as
-- refund.reversed, in either order of arrival. report_recon takes the
-- reversal on both sides: the gateway's (the failure event) and the
-- ledger's (the refund_reversal posting).

-- +goose Up
CREATE TABLE report_refunds (
    refund_id     text        PRIMARY KEY,
    payment_id    text        NOT NULL DEFAULT '',
    succeeded_at  timestamptz,
    failed_at     timestamptz,
    failed_source text        NOT NULL DEFAULT '',
    failed_event  text        NOT NULL DEFAULT ''
);

ALTER TABLE report_recon DROP CONSTRAINT report_recon_kind_check;
ALTER TABLE report_recon ADD CONSTRAINT report_recon_kind_check CHECK (kind IN ('capture', 'refund', 'refund_reversal'));

-- +goose Down
DELETE FROM report_recon WHERE kind = 'refund_reversal';
ALTER TABLE report_recon DROP CONSTRAINT report_recon_kind_check;
ALTER TABLE report_recon ADD CONSTRAINT report_recon_kind_check CHECK (kind IN ('capture', 'refund'));
DROP TABLE report_refunds;
