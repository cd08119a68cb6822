// Package store holds all of process-transaction's SQL: accounts,
// transfers (each its own double entry: postings are a view of them) and
// holds, the group commit's adapter (Committer),
// and the outbox rows written in the same transactions. The rules it
// applies while a row is locked are the ledger package's.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
)

// Store reads and writes process-transaction's tables outside the group
// commit: accounts, reads, holds and asynchronous acceptance.
type Store struct {
	pool   *pgxpool.Pool
	source string
	out    outbox.Writer
}

// New is a store writing its events through out, as out.Source.
func New(pool *pgxpool.Pool, out outbox.Writer) *Store {
	return &Store{pool: pool, source: out.Source, out: out}
}

// transferEventType is the event a decided transfer announces.
func transferEventType(t *ledger.Transfer) string {
	switch t.Status {
	case ledger.TransferPosted:
		return events.TypeTransactionPosted
	case ledger.TransferRejected:
		return events.TypeTransactionRejected
	case ledger.TransferHeld:
		return events.TypeHoldCreated
	case ledger.TransferCaptured:
		return events.TypeHoldCaptured
	case ledger.TransferVoided:
		return events.TypeHoldVoided
	}
	return events.TypeHoldExpired
}

const accountCols = `id, user_id, account_number, currency, balance, balance - held, held, allow_negative, status, version,
	metadata, created_at, updated_at`

func scanAccount(row pgx.Row) (*ledger.Account, error) {
	a := &ledger.Account{}
	err := row.Scan(&a.ID, &a.UserID, &a.AccountNumber, &a.Currency, &a.Balance, &a.Available, &a.Held,
		&a.AllowNegative, &a.Status, &a.Version, &a.Metadata, &a.CreatedAt, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ledger.ErrNotFound("account")
	}
	return a, err
}

// bookCols are the accounts columns scanBooks reads, in its order.
const bookCols = `id, user_id, account_number, currency, balance, held, allow_negative, status`

// scanBooks reads rows of bookCols and indexes them by id and by account
// number; it closes rows.
func scanBooks(rows pgx.Rows) (byID, byNumber map[string]*ledger.Book, err error) {
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ledger.Book, error) {
		b := &ledger.Book{}
		return b, r.Scan(&b.ID, &b.UserID, &b.Number, &b.Currency, &b.Balance, &b.Held, &b.AllowNegative, &b.Status)
	})
	if err != nil {
		return nil, nil, err
	}
	byID, byNumber = make(map[string]*ledger.Book, len(bs)), make(map[string]*ledger.Book, len(bs))
	for _, b := range bs {
		byID[b.ID], byNumber[b.Number] = b, b
	}
	return byID, byNumber, nil
}

const transferCols = `t.id, t.from_account_id, t.to_account_id, t.amount, t.currency, t.status, t.reject_reason,
	t.description, t.reference_id, t.metadata, t.pending, t.captured_amount, t.expires_at, t.created_at, t.posted_at,
	t.from_balance, t.from_available, t.to_balance, t.to_available`

func scanTransfer(row pgx.Row, extra ...any) (*ledger.Transfer, error) {
	t := &ledger.Transfer{}
	dest := append([]any{&t.ID, &t.FromAccountID, &t.ToAccountID, &t.Amount, &t.Currency, &t.Status, &t.RejectReason,
		&t.Description, &t.ReferenceID, &t.Metadata, &t.Pending, &t.CapturedAmount, &t.ExpiresAt, &t.CreatedAt, &t.PostedAt,
		&t.FromBalance, &t.FromAvailable, &t.ToBalance, &t.ToAvailable}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	return t, nil
}

// nullText is JSON as a nullable text parameter (NULL when empty).
func nullText(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

func accountEvent(ctx context.Context, source, typ string, a *ledger.Account) outbox.Message {
	ev := events.Must(events.New(ctx, source, typ, a.ID, events.Account(*a)))
	return outbox.Message{Topic: events.TopicUser, Key: a.ID, Event: ev}
}

// complete stores reply as the request's idempotent response inside tx,
// so it commits with the write (a no-op when the request has no key).
func complete(ctx context.Context, tx pgx.Tx, reply *idempotency.Response) error {
	if reply == nil {
		return nil
	}
	return idempotency.Complete(ctx, tx, *reply)
}

// CreateAccount inserts a (with a generated number when it has none) and
// its billfn.account.created event; reply, built from the stored account,
// is the request's idempotent response.
func (s *Store) CreateAccount(ctx context.Context, a *ledger.Account, limit int, reply func(*ledger.Account) idempotency.Response) error {
	return postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		if limit > 0 {
			// The owner's accounts are counted under its lock, in a
			// statement of their own (whose snapshot follows the lock), so
			// two concurrent openings cannot both take the last place.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(1633903475, hashtext($1::text))`, a.UserID); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE user_id = $1`, a.UserID).Scan(&n); err != nil {
				return err
			}
			if n >= limit {
				return apperr.New(ledger.AccountLimit, "a customer opens at most %d accounts itself; an administrator may open more for it", limit).
					With("limit", limit)
			}
		}
		generated := a.AccountNumber == ""
		for attempt := 0; ; attempt++ {
			if generated {
				a.AccountNumber = ledger.NewAccountNumber()
			}
			_, err := tx.Exec(ctx, "SAVEPOINT number")
			if err != nil {
				return err
			}
			row := tx.QueryRow(ctx, `INSERT INTO accounts (id, user_id, account_number, currency, allow_negative, metadata)
				VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+accountCols,
				a.ID, a.UserID, a.AccountNumber, a.Currency, a.AllowNegative, nullText(a.Metadata))
			created, err := scanAccount(row)
			if c, dup := postgres.UniqueViolation(err); dup && c == "accounts_account_number_key" {
				if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT number"); rerr != nil {
					return rerr
				}
				if !generated || attempt > 5 {
					return apperr.Invalid(apperr.Field("account_number", "is already taken"))
				}
				continue
			}
			if err != nil {
				return err
			}
			*a = *created
			if err := s.out.Add(ctx, tx, accountEvent(ctx, s.source, events.TypeAccountCreated, a)); err != nil {
				return err
			}
			r := reply(a)
			return complete(ctx, tx, &r)
		}
	})
}

// Account reads one account.
func (s *Store) Account(ctx context.Context, id string) (*ledger.Account, error) {
	return scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1`, id))
}

// Accounts is one page of accounts ("" userID: everyone's), newest first
// (ids are UUIDv7), after the id after ("" from the start).
func (s *Store) Accounts(ctx context.Context, userID, after string, limit int) ([]*ledger.Account, error) {
	q := `SELECT ` + accountCols + ` FROM accounts WHERE ($1 = '' OR user_id = $1::uuid) AND ($2 = '' OR id < $2::uuid)
		ORDER BY id DESC LIMIT $3`
	rows, err := s.pool.Query(ctx, q, userID, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ledger.Account, error) { return scanAccount(r) })
}

// UpdateAccount locks account id, lets update change it (reporting whether
// it did), and saves it with a new version and a billfn.account.updated
// event; reply is the request's idempotent response.
func (s *Store) UpdateAccount(ctx context.Context, id string, update func(*ledger.Account) (bool, error),
	reply func(*ledger.Account) idempotency.Response) (*ledger.Account, error) {
	var a *ledger.Account
	err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if a, err = scanAccount(tx.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1 FOR UPDATE`, id)); err != nil {
			return err
		}
		changed, err := update(a)
		if err != nil {
			return err
		}
		if changed {
			if a, err = scanAccount(tx.QueryRow(ctx, `UPDATE accounts SET status = $2, version = version + 1, updated_at = now()
				WHERE id = $1 RETURNING `+accountCols, id, a.Status)); err != nil {
				return err
			}
			if err := s.out.Add(ctx, tx, accountEvent(ctx, s.source, events.TypeAccountUpdated, a)); err != nil {
				return err
			}
		}
		r := reply(a)
		return complete(ctx, tx, &r)
	})
	return a, err
}

type queryRower interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// transfer reads one transfer with the owners of its accounts.
func transfer(ctx context.Context, q queryRower, id string, lock bool) (*ledger.Transfer, error) {
	sql := `SELECT ` + transferCols + `, fa.user_id, ta.user_id, t.idem_scope FROM transfers t
		JOIN accounts fa ON fa.id = t.from_account_id JOIN accounts ta ON ta.id = t.to_account_id WHERE t.id = $1`
	if lock {
		sql += ` FOR UPDATE OF t`
	}
	var fu, tu, by string
	t, err := scanTransfer(q.QueryRow(ctx, sql, id), &fu, &tu, &by)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ledger.ErrNotFound("transfer")
	}
	if err != nil {
		return nil, err
	}
	t.FromUser, t.ToUser, t.PlacedBy = fu, tu, by
	return t, nil
}

// Transfer reads one transfer with the owners of its accounts.
func (s *Store) Transfer(ctx context.Context, id string) (*ledger.Transfer, error) {
	return transfer(ctx, s.pool, id, false)
}

// KeyHashes are the request fingerprints of the transfers stored under
// the idempotency keys of a scope, by key (a key no transfer has is absent).
func (s *Store) KeyHashes(ctx context.Context, scope string, keys ...string) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT idem_key, request_hash FROM transfers WHERE idem_scope = $1 AND idem_key = ANY($2)`, scope, keys)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var h []byte
		if err := rows.Scan(&k, &h); err != nil {
			rows.Close()
			return nil, err
		}
		out[k] = h
	}
	rows.Close()
	return out, rows.Err()
}

// HistoryQuery lists an account's transfers (both sides), newest first.
type HistoryQuery struct {
	Account   string
	From, To  *time.Time
	Status    string
	AfterTime *time.Time
	AfterID   string
	Limit     int
}

// History merges two index range scans (from side, to side), each ordered
// by (created_at, id) descending, and keeps the first Limit rows.
func (s *Store) History(ctx context.Context, q HistoryQuery) ([]*ledger.Transfer, error) {
	side := func(col string) string {
		return `(SELECT ` + transferCols + ` FROM transfers t WHERE t.` + col + ` = $1
			AND ($2::timestamptz IS NULL OR t.created_at >= $2) AND ($3::timestamptz IS NULL OR t.created_at < $3)
			AND ($4 = '' OR t.status = $4)
			AND ($5::timestamptz IS NULL OR (t.created_at, t.id) < ($5, $6::uuid))
			ORDER BY t.created_at DESC, t.id DESC LIMIT $7)`
	}
	after := q.AfterID
	if after == "" {
		after = "00000000-0000-0000-0000-000000000000"
	}
	sql := `SELECT * FROM (` + side("from_account_id") + ` UNION ALL ` + side("to_account_id") + `) h
		ORDER BY created_at DESC, id DESC LIMIT $7`
	rows, err := s.pool.Query(ctx, sql, q.Account, q.From, q.To, q.Status, q.AfterTime, after, q.Limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*ledger.Transfer, error) { return scanTransfer(r) })
}

// lockBooks locks accounts in id order (the order the group commit uses,
// so the two never deadlock) and returns them by id.
func lockBooks(ctx context.Context, tx pgx.Tx, ids ...string) (map[string]*ledger.Book, error) {
	rows, err := tx.Query(ctx, `SELECT `+bookCols+` FROM accounts WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	byID, _, err := scanBooks(rows)
	return byID, err
}

// Resolution is how a hold is to be resolved: the amount to capture (0 for
// a void or an expiry) and the status it ends in.
type Resolution struct {
	Amount int64
	Status string
	// ByHolder: the account holder resolves its own hold (not a
	// privileged caller, not an event), so a frozen source refuses a
	// capture (ledger.HolderMayCapture).
	ByHolder bool
	// Key is the request's Idempotency-Key in its scope ("" for an event):
	// a transfer stored under it was another request, and the capture or
	// void is refused (KeyReused).
	Key ledger.IdemKey
}

// keyLockSQL takes the transaction-scoped advisory locks of idempotency
// keys ($1 scopes, $2 keys), in one order: a transfer's group and a
// capture or a void under the same key take it in turn, so the later one
// sees the earlier's key in a statement after it (a transfer's row, a
// capture's claim) and is refused.
const keyLockSQL = `SELECT count(pg_advisory_xact_lock(h)) FROM (
	SELECT DISTINCT hashtextextended(s || ' ' || k, 0) AS h FROM unnest($1::text[], $2::text[]) AS x(s, k) ORDER BY h) l`

// ownKeysSQL reads the idempotency table's claims on a group's own keys
// (scopes $1, keys $2) younger than the TTL $3: scope, key and the route
// that holds each (Committer.tryCommit).
const ownKeysSQL = `SELECT k.s, k.k, x.route FROM unnest($1::text[], $2::text[]) AS k(s, k)
	CROSS JOIN LATERAL (SELECT i.method || ' ' || i.path AS route, i.created_at FROM idempotency_keys i
		WHERE i.scope = k.s AND i.key = k.k LIMIT 1) x
	WHERE x.created_at >= now() - $3::interval`

// UpdateHold resolves hold id: it locks the transfer, lets decide choose the
// resolution (or refuse: not the caller's, already resolved), locks both
// accounts and resolves the hold by ledger.ResolveHold, then writes the
// balances, transfer (a capture's postings are its view) and its
// billfn.hold.<status> event; reply
// is the request's idempotent response (nil: none).
func (s *Store) UpdateHold(ctx context.Context, id string, now time.Time, decide func(*ledger.Transfer) (Resolution, error),
	reply func(*ledger.Transfer) idempotency.Response) (*ledger.Transfer, error) {
	var t *ledger.Transfer
	err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if t, err = transfer(ctx, tx, id, true); err != nil {
			return err
		}
		how, err := decide(t)
		if err != nil {
			return err
		}
		if err := s.resolveHold(ctx, tx, t, how, now); err != nil {
			return err
		}
		if reply == nil {
			return nil
		}
		r := reply(t)
		return complete(ctx, tx, &r)
	})
	return t, err
}

// resolveHold resolves the locked hold t by the ledger's rule and writes it.
func (s *Store) resolveHold(ctx context.Context, tx pgx.Tx, t *ledger.Transfer, how Resolution, now time.Time) error {
	if err := ledger.CheckResolvable(t, how.Amount); err != nil {
		return err
	}
	books, err := lockBooks(ctx, tx, t.FromAccountID, t.ToAccountID)
	if err != nil {
		return err
	}
	if how.Key.Key != "" {
		// After the accounts, as a group takes them, so neither waits for
		// the other holding what it needs.
		if _, err := tx.Exec(ctx, keyLockSQL, []string{how.Key.Scope}, []string{how.Key.Key}); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM transfers WHERE idem_scope = $1 AND idem_key = $2)`,
			how.Key.Scope, how.Key.Key).Scan(&used); err != nil {
			return err
		}
		if used {
			return apperr.KeyReused("transfer (POST /transfers)")
		}
	}
	from, to := books[t.FromAccountID], books[t.ToAccountID]
	if how.ByHolder && how.Status == ledger.TransferCaptured {
		if err := ledger.HolderMayCapture(from); err != nil {
			return err
		}
	}
	if err := ledger.ResolveHold(t, from, to, how.Amount, how.Status, now); err != nil {
		return err
	}
	for _, b := range []*ledger.Book{from, to} {
		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = $2, held = $3, version = version + 1, updated_at = now()
			WHERE id = $1`, b.ID, b.Balance, b.Held); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE transfers SET status = $2, captured_amount = $3, posted_at = $4,
		from_balance = $5, from_available = $6, to_balance = $7, to_available = $8 WHERE id = $1`,
		t.ID, t.Status, t.CapturedAmount, t.PostedAt, *t.FromBalance, *t.FromAvailable, *t.ToBalance, *t.ToAvailable); err != nil {
		return err
	}
	ev := events.Must(events.New(ctx, s.source, transferEventType(t), t.FromAccountID, t.Transfer))
	return s.out.Add(ctx, tx, outbox.Message{Topic: events.TopicTransaction, Key: t.FromAccountID, Event: ev})
}

// ExpireHolds releases holds whose expires_at has passed, in batches, and
// returns the accounts it changed. Several sweeps may run at once: SKIP
// LOCKED gives each its own holds.
func (s *Store) ExpireHolds(ctx context.Context, now time.Time) (accounts []string, err error) {
	for {
		var batch []string
		err := postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
			batch = batch[:0]
			rows, err := tx.Query(ctx, `SELECT id FROM transfers WHERE status = 'held' AND expires_at <= $1
				ORDER BY expires_at LIMIT 200 FOR UPDATE SKIP LOCKED`, now)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			holds := make([]*ledger.Transfer, 0, len(ids))
			var accountIDs []string
			for _, id := range ids {
				t, err := transfer(ctx, tx, id, false)
				if err != nil {
					return err
				}
				holds = append(holds, t)
				accountIDs = append(accountIDs, t.FromAccountID, t.ToAccountID)
			}
			// Lock every account up front, in id order like the group
			// commit, so the sweep and the committer cannot deadlock.
			if _, err := lockBooks(ctx, tx, accountIDs...); err != nil {
				return err
			}
			for _, t := range holds {
				if err := s.resolveHold(ctx, tx, t, Resolution{Status: ledger.TransferExpired}, now); err != nil {
					return fmt.Errorf("expire hold %s: %w", t.ID, err)
				}
				batch = append(batch, t.FromAccountID)
			}
			return nil
		})
		if err != nil {
			return accounts, err
		}
		accounts = append(accounts, batch...)
		if len(batch) < 200 {
			return accounts, nil
		}
	}
}

// AcceptPending stores o's transfer as pending (answered 202) and emits the
// billfn.transaction.requested event that decides it later through the
// group commit. The same key again returns the stored transfer, in
// whatever state it is now (replayed).
func (s *Store) AcceptPending(ctx context.Context, o *ledger.Op, now time.Time) (t *ledger.Transfer, replayed bool, err error) {
	err = postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+transferCols+`, t.request_hash FROM transfers t WHERE idem_scope = $1 AND idem_key = $2`,
			o.Scope, o.Key)
		if err != nil {
			return err
		}
		var prior []ledger.Prior
		for rows.Next() {
			var p ledger.Prior
			if p.Transfer, err = scanTransfer(rows, &p.Hash); err != nil {
				rows.Close()
				return err
			}
			prior = append(prior, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(prior) == 0 && o.OwnKey {
			// The key held by another route's request (a capture, a void,
			// a batch) in the idempotency table, read once a capture or a
			// void under it has committed (keyLockSQL).
			if _, err := tx.Exec(ctx, keyLockSQL, []string{o.Scope}, []string{o.Key}); err != nil {
				return err
			}
			var route string
			err := tx.QueryRow(ctx, `SELECT method || ' ' || path FROM idempotency_keys
				WHERE scope = $1 AND key = $2 AND created_at >= now() - $3::interval`, o.Scope, o.Key, idempotency.TTL).Scan(&route)
			if err == nil {
				return apperr.KeyReused("request (" + route + ")")
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		if len(prior) > 0 {
			res := ledger.Replay(prior[0], o)
			if res.Transfer == nil {
				return res.Err // the key was used for another request
			}
			// The stored transfer with its owners, in whatever state it is now.
			t, replayed = nil, true
			t, err = transfer(ctx, tx, res.Transfer.ID, false)
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+bookCols+` FROM accounts
			WHERE id = ANY($1::text[]::uuid[]) OR account_number = ANY($2::text[])`,
			[]string{o.Req.FromAccountID, o.Req.ToAccountID}, []string{o.Req.FromAccountNumber, o.Req.ToAccountNumber})
		if err != nil {
			return err
		}
		books, byNumber, err := scanBooks(rows)
		if err != nil {
			return err
		}
		from, to, err := ledger.Parties(&o.Req, o.Caller, books, byNumber)
		if err != nil {
			return err
		}
		t = ledger.NewTransfer(o, from, to, now)
		t.Status = ledger.TransferPending
		_, err = tx.Exec(ctx, `INSERT INTO transfers (id, from_account_id, to_account_id, amount, currency, status, pending,
			expires_at, description, reference_id, metadata, idem_scope, idem_key, request_hash, created_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			t.ID, t.FromAccountID, t.ToAccountID, t.Amount, t.Currency, t.Pending, t.ExpiresAt, t.Description,
			t.ReferenceID, nullText(t.Metadata), o.Scope, o.Key, o.Hash, now)
		if _, dup := postgres.UniqueViolation(err); dup {
			return ledger.KeyInFlight()
		}
		if err != nil {
			return err
		}
		req := o.Req
		req.FromAccountID, req.FromAccountNumber, req.ToAccountID, req.ToAccountNumber = from.ID, "", to.ID, ""
		ev := events.Must(events.New(ctx, s.source, events.TypeTransactionRequested, from.ID,
			events.TransactionRequested{TransferRequest: events.TransferRequest(req), TransferID: t.ID}))
		return s.out.Add(ctx, tx, outbox.Message{Topic: events.TopicTransaction, Key: from.ID, Event: ev})
	})
	return t, replayed, err
}
