-- generate-invoice's emails to the merchant's operator (issue 18): a webhook
-- endpoint handle-webhook disabled (billfn.webhook_endpoint.disabled) is
-- emailed to EMAIL_OPERATOR through the same delivery log. Such a
-- notification names the endpoint and no invoice, subscription, account or
-- customer; every other names its account and owner, as before.

-- +goose Up
ALTER TABLE invoice_notifications ALTER COLUMN account_id DROP NOT NULL,
    ALTER COLUMN owner_user_id DROP NOT NULL,
    ADD COLUMN webhook_endpoint_id uuid,
    DROP CONSTRAINT invoice_notifications_about,
    ADD CONSTRAINT invoice_notifications_about
        CHECK (invoice_id IS NOT NULL OR subscription_id IS NOT NULL OR webhook_endpoint_id IS NOT NULL),
    ADD CONSTRAINT invoice_notifications_owner
        CHECK (webhook_endpoint_id IS NOT NULL OR (account_id IS NOT NULL AND owner_user_id IS NOT NULL));

-- +goose Down
DELETE FROM invoice_notifications WHERE webhook_endpoint_id IS NOT NULL;
ALTER TABLE invoice_notifications DROP CONSTRAINT invoice_notifications_owner,
    DROP CONSTRAINT invoice_notifications_about,
    ADD CONSTRAINT invoice_notifications_about CHECK (invoice_id IS NOT NULL OR subscription_id IS NOT NULL),
    DROP COLUMN webhook_endpoint_id,
    ALTER COLUMN account_id SET NOT NULL,
    ALTER COLUMN owner_user_id SET NOT NULL;
