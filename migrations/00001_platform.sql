-- Platform tables every function uses through shared/: idempotency keys,
-- the transactional outbox, processed-event dedupe and dead letters.
-- Rows carry the owning function's name, so functions never touch each
-- other's rows.

-- +goose Up
CREATE TABLE idempotency_keys (
    scope            text        NOT NULL,               -- function + principal
    key              text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash     bytea       NOT NULL,               -- sha256 of method, path, body
    method           text        NOT NULL,
    path             text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('in_flight', 'done')),
    locked_until     timestamptz,
    response_status  int,
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key),
    CHECK (state = 'in_flight' OR response_status BETWEEN 100 AND 599)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

CREATE TABLE outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text        NOT NULL,                   -- the function that wrote it
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    key          text        NOT NULL,                   -- Kafka record key: the aggregate id
    payload      bytea       NOT NULL,                   -- structured CloudEvent JSON
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     int         NOT NULL DEFAULT 0,
    last_error   text,
    UNIQUE (source, event_id)
);
-- The sweep reads only the backlog; published rows never enter this index.
CREATE INDEX outbox_pending_idx ON outbox (source, id) WHERE published_at IS NULL;

CREATE TABLE processed_events (
    consumer     text        NOT NULL,                   -- the function that handled it
    source       text        NOT NULL,                   -- CloudEvent source
    id           text        NOT NULL,                   -- CloudEvent id
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, source, id)
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

CREATE TABLE dead_letters (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer   text        NOT NULL,
    source     text        NOT NULL,
    event_id   text        NOT NULL,
    type       text        NOT NULL,
    event      jsonb       NOT NULL,                     -- the whole structured CloudEvent
    error      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, source, event_id)
);

-- +goose Down
DROP TABLE dead_letters;
DROP TABLE processed_events;
DROP TABLE outbox;
DROP TABLE idempotency_keys;
