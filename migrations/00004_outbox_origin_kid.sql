-- An outbox row may be written already signed with its function's origin
-- key (shared/outbox Writer): origin_kid names that key, and the publisher
-- relays such a row as it is instead of decoding it to sign it. NULL: the
-- row was written unsigned (another source's event, a writer without the
-- key, a row from before this column), and the publisher signs it.

-- +goose Up
ALTER TABLE outbox ADD COLUMN origin_kid text;

-- +goose Down
ALTER TABLE outbox DROP COLUMN origin_kid;
