-- A key is claimed (a row of ~150 bytes, in_flight) and, once its request
-- is done, completed in place with the stored response (the row grows to
-- ~1 KB: the response body). With pages filled to the brim by the claims,
-- the completed row found no room on its page and moved to another: a
-- non-HOT update, a new entry in each of the table's two indexes for every
-- key (the primary key's randomly placed), dead ones left for VACUUM. A
-- fillfactor of 10 keeps claims to a tenth of a page, leaving the rest for
-- their responses: the completion is a HOT update (capture-payment's
-- TestPaymentUpdatesAreHOT: 13 % of them before, all after), for a heap
-- about 2.4 times as large (about three keys a page instead of seven). It
-- applies to pages filled from now on.

-- +goose Up
ALTER TABLE idempotency_keys SET (fillfactor = 10);

-- +goose Down
ALTER TABLE idempotency_keys RESET (fillfactor);
