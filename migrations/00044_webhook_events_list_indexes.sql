-- handle-webhook stores every gateway webhook (issue 20): each row added an
-- entry to five full indexes, three of them only for the admin's list
-- (GET /events?gateway=&type=&status=). By gateway (two of them) the list
-- reads the primary key backwards and skips the other's rows; by status,
-- the rare ones (parked, ignored) have a partial index a processed row
-- (nearly every row, which the primary key lists as well) never enters.
-- A webhook now adds three entries: the primary key, the dedupe key and the
-- list by type.

-- +goose Up
DROP INDEX webhook_events_gateway_idx;
DROP INDEX webhook_events_status_idx;
CREATE INDEX webhook_events_unprocessed_idx ON webhook_events (status, id DESC) WHERE status <> 'processed';

-- +goose Down
DROP INDEX webhook_events_unprocessed_idx;
CREATE INDEX webhook_events_gateway_idx ON webhook_events (gateway, id DESC);
CREATE INDEX webhook_events_status_idx ON webhook_events (status, id DESC);
