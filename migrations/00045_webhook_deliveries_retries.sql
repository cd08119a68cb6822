-- handle-webhook's outgoing deliveries (issue 18): a retry by hand
-- (POST /deliveries/{id}/retry) asked while an attempt of the same delivery
-- was in flight was overwritten by that attempt's record, which could even
-- spend the old schedule and disable the endpoint. retries counts the
-- retries by hand; the sender records an attempt only over the count it
-- claimed the delivery with, so a retry asked meanwhile stands.

-- +goose Up
ALTER TABLE webhook_deliveries ADD COLUMN retries int NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE webhook_deliveries DROP COLUMN retries;
