-- generate-invoice's emails about a subscription (issue 18): a plan changed,
-- a subscription ended. Such a notification names the subscription and no
-- invoice; every other names its invoice, as before.

-- +goose Up
ALTER TABLE invoice_notifications ALTER COLUMN invoice_id DROP NOT NULL,
    ADD COLUMN subscription_id uuid,
    ADD CONSTRAINT invoice_notifications_about CHECK (invoice_id IS NOT NULL OR subscription_id IS NOT NULL);
CREATE INDEX invoice_notifications_subscription_idx ON invoice_notifications (subscription_id, id) WHERE subscription_id IS NOT NULL;

-- +goose Down
DELETE FROM invoice_notifications WHERE invoice_id IS NULL;
DROP INDEX invoice_notifications_subscription_idx;
ALTER TABLE invoice_notifications DROP CONSTRAINT invoice_notifications_about, DROP COLUMN subscription_id,
    ALTER COLUMN invoice_id SET NOT NULL;
