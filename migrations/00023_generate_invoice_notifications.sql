-- generate-invoice's delivery log of the customer's emails (issue 18): one
-- row per billfn.notification.requested (or resend), written in the
-- transaction that applies the event, so an email exists exactly when its
-- event was applied; the sender takes queued rows whose next_attempt_at has
-- come, sends them through SMTP and records the server's answer.

-- +goose Up
CREATE TABLE invoice_notifications (
    id              uuid        PRIMARY KEY,                -- UUIDv7: lists are ordered by id
    event_source    text        NOT NULL,                   -- the requesting event (source, id); a resend: the notification's own
    event_id        text        NOT NULL,
    kind            text        NOT NULL,                   -- invoice_finalized, invoice_paid, payment_failed, invoice_overdue, invoice_reminder
    invoice_id      uuid        NOT NULL,
    account_id      uuid        NOT NULL,
    owner_user_id   uuid        NOT NULL,
    recipient       text        NOT NULL DEFAULT '',        -- the invoice customer's email ('' when none)
    status          text        NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'suppressed')),
    reason          text,                                   -- why suppressed or failed
    data            jsonb       NOT NULL,                   -- the NotificationRequested data
    message_id      text        NOT NULL,                   -- the Message-ID header, the same on every attempt
    subject         text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,                            -- set while queued
    smtp_code       integer,                                -- the SMTP server's last answer
    smtp_response   text,
    resend_of       uuid        REFERENCES invoice_notifications (id),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    UNIQUE (event_source, event_id)
);
CREATE INDEX invoice_notifications_due_idx ON invoice_notifications (next_attempt_at) WHERE status = 'queued';
CREATE INDEX invoice_notifications_invoice_idx ON invoice_notifications (invoice_id, id);
CREATE INDEX invoice_notifications_status_idx ON invoice_notifications (status, id);

-- +goose Down
DROP TABLE invoice_notifications;
