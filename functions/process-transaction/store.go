package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// store holds the SQL of process-transaction's own tables outside the
// group commit: accounts, reads, holds and asynchronous acceptance.
type store struct {
	pool   *pgxpool.Pool
	source string
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		panic(err)
	}
	return id.String()
}

const accountCols = `id, user_id, account_number, currency, balance, balance - held, held, allow_negative, status, version,
	metadata, created_at, updated_at`

func scanAccount(row pgx.Row) (*Account, error) {
	a := &Account{}
	err := row.Scan(&a.ID, &a.UserID, &a.AccountNumber, &a.Currency, &a.Balance, &a.Available, &a.Held,
		&a.AllowNegative, &a.Status, &a.Version, &a.Metadata, &a.CreatedAt, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, problem.New(problem.NotFound, "no such account")
	}
	return a, err
}

// crockford is Crockford's base32 alphabet: no I, L, O, U to misread.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newAccountNumber makes a readable number like ACC-7F3K-9Q2M (40 random bits).
func newAccountNumber() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	out := []byte("ACC-XXXX-XXXX")
	j := 4
	for i := 0; i < 8; i++ {
		if j == 8 {
			j++
		}
		out[j] = crockford[b[i]&31]
		j++
	}
	return string(out)
}

func accountEvent(ctx context.Context, source, typ string, a *Account) outbox.Message {
	ev := events.Must(events.New(ctx, source, typ, a.ID, a))
	return outbox.Message{Topic: events.TopicUser, Key: a.ID, Event: ev}
}

// createAccount inserts an account and its account.created event.
func (s *store) createAccount(ctx context.Context, tx pgx.Tx, a *Account) error {
	generated := a.AccountNumber == ""
	for attempt := 0; ; attempt++ {
		if generated {
			a.AccountNumber = newAccountNumber()
		}
		_, err := tx.Exec(ctx, "SAVEPOINT number")
		if err != nil {
			return err
		}
		row := tx.QueryRow(ctx, `INSERT INTO accounts (id, user_id, account_number, currency, allow_negative, metadata)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+accountCols,
			a.ID, a.UserID, a.AccountNumber, a.Currency, a.AllowNegative, nullJSON(a.Metadata))
		created, err := scanAccount(row)
		if c, dup := postgres.UniqueViolation(err); dup && c == "accounts_account_number_key" {
			if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT number"); rerr != nil {
				return rerr
			}
			if !generated || attempt > 5 {
				return problem.Invalid(problem.Field("account_number", "is already taken"))
			}
			continue
		}
		if err != nil {
			return err
		}
		*a = *created
		return outbox.Add(ctx, tx, s.source, accountEvent(ctx, s.source, "billfn.account.created", a))
	}
}

func nullJSON(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func (s *store) account(ctx context.Context, id string) (*Account, error) {
	return scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1`, id))
}

// accountPage is one page of accounts, newest first (ids are UUIDv7).
func (s *store) accounts(ctx context.Context, userID, after string, limit int) ([]*Account, error) {
	q := `SELECT ` + accountCols + ` FROM accounts WHERE ($1 = '' OR user_id = $1::uuid) AND ($2 = '' OR id < $2::uuid)
		ORDER BY id DESC LIMIT $3`
	rows, err := s.pool.Query(ctx, q, userID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// setStatus changes an account's status (admin). Closing needs a zero
// balance and no open hold; a closed account stays closed.
func (s *store) setStatus(ctx context.Context, tx pgx.Tx, id, status string) (*Account, error) {
	a, err := scanAccount(tx.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, err
	}
	if a.Status == status {
		return a, nil
	}
	if a.Status == StatusClosed {
		return nil, problem.New(problem.Conflict, "a closed account cannot be reopened")
	}
	if status == StatusClosed && (a.Balance != 0 || a.Held != 0) {
		return nil, problem.New(AccountNotEmpty, "the account still holds %d (and %d in open holds); move it out before closing", a.Balance, a.Held).
			With("balance", a.Balance).With("held", a.Held)
	}
	a, err = scanAccount(tx.QueryRow(ctx, `UPDATE accounts SET status = $2, version = version + 1, updated_at = now()
		WHERE id = $1 RETURNING `+accountCols, id, status))
	if err != nil {
		return nil, err
	}
	return a, outbox.Add(ctx, tx, s.source, accountEvent(ctx, s.source, "billfn.account.updated", a))
}

// transfer reads one transfer with the owners of its accounts.
func (s *store) transfer(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id string, lock bool) (*Transfer, error) {
	sql := `SELECT ` + transferCols + `, fa.user_id, ta.user_id FROM transfers t
		JOIN accounts fa ON fa.id = t.from_account_id JOIN accounts ta ON ta.id = t.to_account_id WHERE t.id = $1`
	if lock {
		sql += ` FOR UPDATE OF t`
	}
	var t *Transfer
	var fu, tu string
	t, err := scanTransfer(q.QueryRow(ctx, sql, id), &fu, &tu)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, problem.New(problem.NotFound, "no such transfer")
	}
	if err != nil {
		return nil, err
	}
	t.fromUser, t.toUser = fu, tu
	return t, nil
}

// historyQuery lists an account's transfers (both sides), newest first.
type historyQuery struct {
	account   string
	from, to  *time.Time
	status    string
	afterTime *time.Time
	afterID   string
	limit     int
}

// history merges two index range scans (from side, to side), each ordered
// by (created_at, id) descending, and keeps the first limit rows.
func (s *store) history(ctx context.Context, q historyQuery) ([]*Transfer, error) {
	side := func(col string) string {
		return `(SELECT ` + transferCols + ` FROM transfers t WHERE t.` + col + ` = $1
			AND ($2::timestamptz IS NULL OR t.created_at >= $2) AND ($3::timestamptz IS NULL OR t.created_at < $3)
			AND ($4 = '' OR t.status = $4)
			AND ($5::timestamptz IS NULL OR (t.created_at, t.id) < ($5, $6::uuid))
			ORDER BY t.created_at DESC, t.id DESC LIMIT $7)`
	}
	after := q.afterID
	if after == "" {
		after = "00000000-0000-0000-0000-000000000000"
	}
	sql := `SELECT * FROM (` + side("from_account_id") + ` UNION ALL ` + side("to_account_id") + `) h
		ORDER BY created_at DESC, id DESC LIMIT $7`
	rows, err := s.pool.Query(ctx, sql, q.account, q.from, q.to, q.status, q.afterTime, after, q.limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Transfer
	for rows.Next() {
		t, err := scanTransfer(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// lockAccounts locks accounts in id order (the order the group commit
// uses, so the two never deadlock) and returns them by id.
func lockAccounts(ctx context.Context, tx pgx.Tx, ids ...string) (map[string]*acct, error) {
	rows, err := tx.Query(ctx, `SELECT `+acctCols+` FROM accounts WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, err
	}
	byID, _, err := scanAccts(rows)
	return byID, err
}

func saveAccounts(ctx context.Context, tx pgx.Tx, as ...*acct) error {
	for _, a := range as {
		if _, err := tx.Exec(ctx, `UPDATE accounts SET balance = $2, held = $3, version = version + 1, updated_at = now()
			WHERE id = $1`, a.id, a.balance, a.held); err != nil {
			return err
		}
	}
	return nil
}

// resolveHold closes an open hold: capture amount (> 0) moves that much and
// releases the rest; amount 0 releases everything (void, expiry).
func (s *store) resolveHold(ctx context.Context, tx pgx.Tx, t *Transfer, amount int64, status string, now time.Time) error {
	if t.Status != TransferHeld {
		return problem.New(TransferNotHeld, "transfer %s is %s, not an open hold", t.ID, t.Status).With("status", t.Status)
	}
	if amount > t.Amount {
		return problem.New(CaptureExceeds, "capture of %d exceeds the hold of %d", amount, t.Amount).With("held", t.Amount)
	}
	as, err := lockAccounts(ctx, tx, t.FromAccountID, t.ToAccountID)
	if err != nil {
		return err
	}
	from, to := as[t.FromAccountID], as[t.ToAccountID]
	if amount > 0 && to.status == StatusClosed {
		return problem.New(AccountClosed, "the destination account is closed")
	}
	from.held -= t.Amount
	typ := "billfn.hold." + status
	if amount > 0 {
		from.balance -= amount
		to.balance += amount
		if _, err := tx.Exec(ctx, `INSERT INTO postings (transfer_id, account_id, amount, balance_after, created_at)
			VALUES ($1, $2, $3, $4, $6), ($1, $5, $7, $8, $6)`,
			t.ID, from.id, -amount, from.balance, to.id, now, amount, to.balance); err != nil {
			return err
		}
		t.PostedAt = &now
	}
	if err := saveAccounts(ctx, tx, from, to); err != nil {
		return err
	}
	fb, fa, tb, ta := from.balance, from.available(), to.balance, to.available()
	t.Status, t.CapturedAmount = status, amount
	t.FromBalance, t.FromAvailable, t.ToBalance, t.ToAvailable = &fb, &fa, &tb, &ta
	if _, err := tx.Exec(ctx, `UPDATE transfers SET status = $2, captured_amount = $3, posted_at = $4,
		from_balance = $5, from_available = $6, to_balance = $7, to_available = $8 WHERE id = $1`,
		t.ID, status, amount, t.PostedAt, fb, fa, tb, ta); err != nil {
		return err
	}
	ev := events.Must(events.New(ctx, s.source, typ, t.FromAccountID, t))
	return outbox.Add(ctx, tx, s.source, outbox.Message{Topic: events.TopicTransaction, Key: t.FromAccountID, Event: ev})
}

// expireHolds releases holds whose expires_at has passed, in batches.
// Several sweeps may run at once: SKIP LOCKED gives each its own holds.
func (s *store) expireHolds(ctx context.Context, now time.Time) (expired []string, err error) {
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
			holds := make([]*Transfer, 0, len(ids))
			var accountIDs []string
			for _, id := range ids {
				t, err := s.transfer(ctx, tx, id, false)
				if err != nil {
					return err
				}
				holds = append(holds, t)
				accountIDs = append(accountIDs, t.FromAccountID, t.ToAccountID)
			}
			// Lock every account up front, in id order like the group
			// commit, so the sweep and the committer cannot deadlock.
			if _, err := lockAccounts(ctx, tx, accountIDs...); err != nil {
				return err
			}
			for _, t := range holds {
				if err := s.resolveHold(ctx, tx, t, 0, TransferExpired, now); err != nil {
					return fmt.Errorf("expire hold %s: %w", t.ID, err)
				}
				batch = append(batch, t.FromAccountID)
			}
			return nil
		})
		if err != nil {
			return expired, err
		}
		expired = append(expired, batch...)
		if len(batch) < 200 {
			return expired, nil
		}
	}
}

// requestedData is the data of billfn.transaction.requested: a transfer
// request, and for a transfer accepted with 202 the id that decides it.
type requestedData struct {
	TransferRequest
	TransferID string `json:"transfer_id,omitempty"`
}

// acceptPending stores a transfer as pending (status 202) and emits the
// billfn.transaction.requested event that decides it later. The same key
// again returns the stored transfer, in whatever state it is now.
func (s *store) acceptPending(ctx context.Context, o *op) (t *Transfer, replayed bool, err error) {
	err = postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		var id string
		var hash []byte
		err := tx.QueryRow(ctx, `SELECT id, request_hash FROM transfers WHERE idem_scope = $1 AND idem_key = $2`,
			o.scope, o.key).Scan(&id, &hash)
		if err == nil {
			if string(hash) != string(o.hash) {
				return problem.New(problem.IdempotencyKeyReused, "this Idempotency-Key was used for a different transfer; use a new key for a new request")
			}
			t, replayed = nil, true
			t, err = s.transfer(ctx, tx, id, false)
			return err
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+acctCols+` FROM accounts
			WHERE id = ANY($1::text[]::uuid[]) OR account_number = ANY($2::text[])`,
			[]string{o.req.FromAccountID, o.req.ToAccountID}, []string{o.req.FromAccountNumber, o.req.ToAccountNumber})
		if err != nil {
			return err
		}
		accounts, byNumber, err := scanAccts(rows)
		if err != nil {
			return err
		}
		from := lookup(o.req.FromAccountID, o.req.FromAccountNumber, accounts, byNumber)
		to := lookup(o.req.ToAccountID, o.req.ToAccountNumber, accounts, byNumber)
		switch {
		case from == nil || !o.principal.CanAccess(from.userID):
			return problem.New(problem.NotFound, "no such source account")
		case to == nil:
			return problem.New(problem.NotFound, "no such destination account")
		case from == to:
			return problem.New(SameAccount, "a transfer needs two different accounts")
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		t = &Transfer{ID: o.id, FromAccountID: from.id, ToAccountID: to.id, Amount: o.req.Amount, Currency: o.req.Currency,
			Status: TransferPending, Description: o.req.Description, ReferenceID: o.req.ReferenceID, Metadata: o.req.Metadata,
			Pending: o.req.Pending, ExpiresAt: o.req.ExpiresAt, CreatedAt: now, fromUser: from.userID, toUser: to.userID}
		_, err = tx.Exec(ctx, `INSERT INTO transfers (id, from_account_id, to_account_id, amount, currency, status, pending,
			expires_at, description, reference_id, metadata, idem_scope, idem_key, request_hash, created_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			t.ID, t.FromAccountID, t.ToAccountID, t.Amount, t.Currency, t.Pending, t.ExpiresAt, t.Description,
			t.ReferenceID, nullJSON(t.Metadata), o.scope, o.key, o.hash, now)
		if _, dup := postgres.UniqueViolation(err); dup {
			return &problem.Error{Code: problem.IdempotencyInFlight, Detail: "a request with this Idempotency-Key is being processed; retry shortly", RetryAfter: time.Second}
		}
		if err != nil {
			return err
		}
		req := o.req
		req.FromAccountID, req.FromAccountNumber, req.ToAccountID, req.ToAccountNumber = from.id, "", to.id, ""
		ev := events.Must(events.New(ctx, s.source, "billfn.transaction.requested", from.id, requestedData{req, t.ID}))
		return outbox.Add(ctx, tx, s.source, outbox.Message{Topic: events.TopicTransaction, Key: from.id, Event: ev})
	})
	return t, replayed, err
}
