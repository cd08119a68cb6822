-- generate-invoice's email log is pruned (issue 18): a notification that is
-- done with (sent, failed, suppressed) is deleted EMAIL_LOG_RETENTION after
-- its last change, by the tick, oldest first. A resend outlives the email it
-- sent again: its resend_of then becomes null.

-- +goose Up
ALTER TABLE invoice_notifications DROP CONSTRAINT invoice_notifications_resend_of_fkey,
    ADD CONSTRAINT invoice_notifications_resend_of_fkey FOREIGN KEY (resend_of) REFERENCES invoice_notifications (id) ON DELETE SET NULL;
CREATE INDEX invoice_notifications_done_idx ON invoice_notifications (updated_at) WHERE status <> 'queued';
CREATE INDEX invoice_notifications_resend_idx ON invoice_notifications (resend_of) WHERE resend_of IS NOT NULL;

-- +goose Down
DROP INDEX invoice_notifications_resend_idx;
DROP INDEX invoice_notifications_done_idx;
ALTER TABLE invoice_notifications DROP CONSTRAINT invoice_notifications_resend_of_fkey,
    ADD CONSTRAINT invoice_notifications_resend_of_fkey FOREIGN KEY (resend_of) REFERENCES invoice_notifications (id);
