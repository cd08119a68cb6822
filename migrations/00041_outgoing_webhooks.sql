-- handle-webhook's outgoing webhooks (issue 18): the merchant's endpoints
-- and one delivery per (endpoint, event), the delivery log.

-- +goose Up
CREATE TABLE webhook_endpoints (
    id                         uuid        PRIMARY KEY,           -- UUIDv7
    url                        text        NOT NULL,
    events                     text[]      NOT NULL,              -- types and prefixes (billfn.invoice.*)
    description                text        NOT NULL DEFAULT '',
    secret                     text        NOT NULL,              -- whsec_…: HMAC needs it, so it is kept
    previous_secret            text,                              -- still signs until previous_secret_expires_at
    previous_secret_expires_at timestamptz,
    disabled                   boolean     NOT NULL DEFAULT false,
    disabled_reason            text,
    lease_until                timestamptz,                       -- a sender is delivering to it (one at a time: in order)
    created_at                 timestamptz NOT NULL,
    updated_at                 timestamptz NOT NULL
);
-- the sender's and the enqueue's walk over the enabled endpoints (the
-- functions run with enable_seqscan off: no plan may need a full scan)
CREATE INDEX webhook_endpoints_enabled_idx ON webhook_endpoints (id) WHERE NOT disabled;

CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY,                      -- UUIDv7, the webhook-id; per endpoint, the order of sending
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    event_source    text        NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    payload         bytea       NOT NULL,                         -- the CloudEvent JSON, the same bytes on every attempt
    status          text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_attempt_at timestamptz,
    response_status int,
    response_body   text,
    latency_ms      bigint,
    error           text,
    created_at      timestamptz NOT NULL,
    UNIQUE (endpoint_id, event_source, event_id)                  -- once per event per endpoint
);
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id DESC);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
