-- The outbox deletes a row once Kafka has acknowledged it, instead of
-- stamping published_at: a delete touches no index, while that update
-- rewrote the row and all three of its index entries. Kafka keeps the
-- published history; the table holds only the backlog, so a sweep's read
-- is always small.

-- +goose Up
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_pending_idx;
ALTER TABLE outbox DROP CONSTRAINT outbox_source_event_id_key;
ALTER TABLE outbox DROP COLUMN published_at;
CREATE INDEX outbox_source_idx ON outbox (source, id);

-- +goose Down
DROP INDEX outbox_source_idx;
ALTER TABLE outbox ADD COLUMN published_at timestamptz;
ALTER TABLE outbox ADD CONSTRAINT outbox_source_event_id_key UNIQUE (source, event_id);
CREATE INDEX outbox_pending_idx ON outbox (source, id) WHERE published_at IS NULL;
