-- process-transaction: postings keyed by account first, one index fewer.
--
-- postings had two indexes: its primary key (id) and (account_id, id) for
-- an account's lines in order. No query of the function reads postings
-- (they are the immutable double-entry lines, written twice per posted
-- transfer: the ledger invariant tests and operators read them), and id is
-- an identity, so (account_id, id) is as unique as id alone and still finds
-- an account's lines in order. Nothing looks a posting up by id alone.
--
-- Each posted transfer writes two postings: 4 -> 2 index entries per
-- transfer (issue 20).

-- +goose Up
ALTER TABLE postings DROP CONSTRAINT postings_pkey;
ALTER TABLE postings ADD PRIMARY KEY (account_id, id);
DROP INDEX postings_account_idx;

-- +goose Down
CREATE INDEX postings_account_idx ON postings (account_id, id);
ALTER TABLE postings DROP CONSTRAINT postings_pkey;
ALTER TABLE postings ADD PRIMARY KEY (id);
