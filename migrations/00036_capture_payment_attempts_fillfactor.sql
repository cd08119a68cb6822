-- An attempt is inserted before the gateway is called and updated with its
-- outcome (the gateway's object id, the finish time) once it answers. On a
-- page the inserts had filled, one update in eight found no room for the
-- row's new version and moved it to another page: a non-HOT update, a new
-- primary key entry. A fillfactor of 70 leaves the room: every outcome is a
-- HOT update (TestPaymentUpdatesAreHOT). It applies to pages filled from
-- now on.

-- +goose Up
ALTER TABLE payment_attempts SET (fillfactor = 70);

-- +goose Down
ALTER TABLE payment_attempts RESET (fillfactor);
