-- handle-webhook: every verified gateway webhook, raw (audit and replay),
-- and the map from gateway object ids to billfn payment ids it learns from
-- payment-events and from the billfn_payment_id metadata.

-- +goose Up
CREATE TABLE webhook_events (
    id                 uuid        PRIMARY KEY,                -- UUIDv7: time-ordered, the list's keyset
    gateway            text        NOT NULL CHECK (gateway IN ('stripe', 'sandbox')),
    gateway_event_id   text        NOT NULL,                   -- evt_…
    type               text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('processed', 'parked', 'ignored')),
    object_type        text        NOT NULL DEFAULT '',
    gateway_object_id  text        NOT NULL DEFAULT '',
    gateway_payment_id text        NOT NULL DEFAULT '',        -- the PaymentIntent it concerns
    payment_id         uuid,
    body               bytea       NOT NULL,                   -- the raw body, byte for byte
    occurred_at        timestamptz NOT NULL,                   -- the gateway's event time
    received_at        timestamptz NOT NULL,
    processed_at       timestamptz,
    replays            int         NOT NULL DEFAULT 0,
    UNIQUE (gateway, gateway_event_id)
);
CREATE INDEX webhook_events_parked_idx ON webhook_events (gateway, gateway_payment_id) WHERE status = 'parked';
CREATE INDEX webhook_events_gateway_idx ON webhook_events (gateway, id DESC);
CREATE INDEX webhook_events_status_idx ON webhook_events (status, id DESC);
CREATE INDEX webhook_events_type_idx ON webhook_events (type, id DESC);

CREATE TABLE webhook_payment_refs (
    gateway            text        NOT NULL,
    gateway_payment_id text        NOT NULL,
    payment_id         uuid        NOT NULL,
    learned_from       text        NOT NULL,                   -- an event type or "metadata"
    created_at         timestamptz NOT NULL,
    PRIMARY KEY (gateway, gateway_payment_id)
);

-- +goose Down
DROP TABLE webhook_payment_refs;
DROP TABLE webhook_events;
