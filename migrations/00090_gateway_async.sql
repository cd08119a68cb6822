-- The local gateway's /async-function queue (cmd/stack): a call answered
-- 202 is here until it was delivered, so a crash of the stack loses none;
-- the next gateway delivers what is left, with the same X-Call-Id.

-- +goose Up
CREATE TABLE gateway_async_calls (
    id           bigserial   PRIMARY KEY,
    call_id      text        NOT NULL,
    function     text        NOT NULL,
    method       text        NOT NULL,
    path         text        NOT NULL,
    raw_path     text        NOT NULL DEFAULT '',
    query        text        NOT NULL DEFAULT '',
    header       jsonb       NOT NULL,
    body         bytea       NOT NULL,
    callback     text        NOT NULL DEFAULT '',
    accepted_at  timestamptz NOT NULL,
    owner        text        NOT NULL DEFAULT '',  -- the gateway that leased it
    leased_until timestamptz                       -- NULL: due
);

-- +goose Down
DROP TABLE gateway_async_calls;
