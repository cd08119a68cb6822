-- The outbox's primary key is (source, id) instead of (id), and the
-- (source, id) index of 00002 goes: every query on the table names its
-- source (the publisher's sweep, in id order; its delete of what Kafka
-- acknowledged and its note on what it refused, by source and ids; the
-- backlog for /metrics), so one index serves them all. Each event is
-- inserted once: one index entry instead of two (shared/outbox
-- TestTheOutboxHasOneIndexThePrimaryKeyOnSourceAndID). id stays unique:
-- it is an identity, and no one writes it.

-- +goose Up
DROP INDEX outbox_source_idx;
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (source, id);

-- +goose Down
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, ADD PRIMARY KEY (id);
CREATE INDEX outbox_source_idx ON outbox (source, id);
