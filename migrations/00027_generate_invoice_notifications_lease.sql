-- generate-invoice's email claims are HOT updates (issue 20).
--
-- A sender leased a queued email by moving its next_attempt_at to the
-- lease's end (and its updated_at to the claim's time); both columns are
-- indexed (invoice_notifications_due_idx, _done_idx), so no claim was HOT:
-- each added an entry to every index of the table (the emails' rows then
-- held about 15 index entries each) and left a dead tuple for VACUUM.
--
-- The lease now has columns of its own that no index holds: leased_until
-- (the lease's end: the email is claimable again from then, as when a
-- sender dies while sending) and claimed_at (the claim's time). A claim
-- sets them and attempts, nothing indexed; an outcome clears them. What a
-- reader sees is unchanged: next_attempt_at reads as the later of itself
-- and leased_until, updated_at as the later of itself and claimed_at
-- (store.notificationCols).
--
-- The claimed version must find room on the old one's page, and the
-- receiver logs a delivery's emails together, so a claim takes rows that
-- share pages, all in one transaction: half of each new page is kept free
-- (fillfactor 50) for the claimed versions, which a later page prune
-- reclaims once the outcome has moved the row on (TestEmailClaimsAreHOT).
-- It applies to pages filled from now on; no rewrite.

-- +goose Up
ALTER TABLE invoice_notifications ADD COLUMN leased_until timestamptz, ADD COLUMN claimed_at timestamptz;
ALTER TABLE invoice_notifications SET (fillfactor = 50);

-- +goose Down
ALTER TABLE invoice_notifications RESET (fillfactor);
UPDATE invoice_notifications SET next_attempt_at = greatest(next_attempt_at, leased_until),
    updated_at = greatest(updated_at, claimed_at) WHERE leased_until IS NOT NULL;
ALTER TABLE invoice_notifications DROP COLUMN leased_until, DROP COLUMN claimed_at;
