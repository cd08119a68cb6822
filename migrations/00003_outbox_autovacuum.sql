-- The outbox is a queue: rows live milliseconds, so dead tuples pile up far
-- faster than the default thresholds (20% of the table) notice. Vacuum it
-- after every few thousand deletes, without throttling.

-- +goose Up
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                        autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,
                        autovacuum_analyze_threshold = 5000);

-- +goose Down
ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
                          autovacuum_vacuum_cost_delay, autovacuum_analyze_scale_factor,
                          autovacuum_analyze_threshold);
