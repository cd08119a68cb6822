-- processed_events' processed_at index, kept for a retention delete
-- (DELETE ... WHERE processed_at < $1; none runs yet), is a BRIN index
-- instead of a b-tree: rows are inserted in processed_at order, so a
-- summary (min, max) per 128 heap pages finds the old ones, without an
-- index entry per handled event (the b-tree was 1 of the 2 entries each
-- row added; shared/events TestProcessedEventsHaveOneEntryPerRowThePrimaryKey).
-- On 1M rows over 60 days (PostgreSQL 15, EXPLAIN ANALYZE): the index
-- is 24 kB instead of 21 MB, and deleting the oldest day (16,666 rows) is
-- a bitmap scan of 256 lossy heap blocks, 9.5 ms (the b-tree's index scan:
-- 14.7 ms; no index, a sequential scan: 122.8 ms). A range's summary only
-- widens: once deleted rows' space is reused by new rows, the retention
-- delete rereads those ranges (brin_desummarize_range resets one). The
-- dedupe, the primary key (consumer, source, id), is unchanged.

-- +goose Up
DROP INDEX processed_events_processed_at_idx;
CREATE INDEX processed_events_processed_at_idx ON processed_events USING brin (processed_at);

-- +goose Down
DROP INDEX processed_events_processed_at_idx;
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
