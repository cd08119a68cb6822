package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// The committer applies many transfers in ONE database transaction (group
// commit). Requests queue on a channel; one goroutine takes everything that
// is waiting (up to maxOps), and in two round trips to Postgres:
//
//  1. BEGIN; lock every touched account (ORDER BY id, so concurrent groups
//     never deadlock); read the idempotency keys already used;
//  2. decide each transfer in Go against the running balances, then insert
//     transfers, postings, account updates and outbox events in bulk
//     (unnest) and COMMIT — all pipelined in one pgx batch.
//
// Each caller gets its own outcome: one rejected transfer never fails the
// others, unless they were submitted together as an atomic unit. While a
// group commits the next one gathers, so under load groups grow by
// themselves and the cost per transfer falls.

// op is one transfer to decide.
type op struct {
	req       TransferRequest
	principal auth.Principal
	scope     string // idempotency scope: the caller, or the event source
	key       string // Idempotency-Key (derived per item for batches), or the event id
	hash      []byte // fingerprint of the request
	complete  string // id of an accepted-asynchronously transfer to decide
	id        string // id of the new transfer

	res outcome
}

// outcome is what one op ended as.
type outcome struct {
	transfer *Transfer
	replayed bool  // an earlier request with the same key decided it
	err      error // a rejection (transfer stored), or a problem (nothing stored)
	done     bool
}

// unit is ops submitted together: a single transfer, a batch, or a batch
// that must apply all-or-nothing.
type unit struct {
	ops    []*op
	atomic bool
	done   chan struct{}
}

type committer struct {
	pool     *pgxpool.Pool
	source   string
	now      func() time.Time
	in       chan *unit
	maxOps   int
	window   time.Duration
	workers  int                     // committers sharing the queue; their groups overlap
	onCommit func(accounts []string) // cache invalidation, outbox kick

	sysMu sync.Mutex
	sys   map[string]bool // system account numbers known to exist
}

var (
	groupSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "billfn_ledger_group_transfers", Help: "Transfers decided per group commit.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048},
	})
	groupSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "billfn_ledger_group_seconds", Help: "Duration of one group commit.",
		Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512},
	})
	groupRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "billfn_ledger_group_retries_total", Help: "Group commits run again after a conflict.",
	})
)

func newCommitter(pool *pgxpool.Pool, source string, now func() time.Time, onCommit func([]string)) *committer {
	return &committer{pool: pool, source: source, now: now, in: make(chan *unit, 4096), maxOps: 2000,
		onCommit: onCommit, sys: map[string]bool{}}
}

// submit queues u and waits until it is decided or ctx ends. The group
// runs with its own context, so a caller that goes away never turns a
// committed transfer into an error: a retry replays it.
func (c *committer) submit(ctx context.Context, u *unit) error {
	u.done = make(chan struct{})
	select {
	case c.in <- u:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-u.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finished is a committed group waiting for its callers to be answered.
type finished struct {
	group   []*unit
	touched []string
}

// run commits groups until ctx ends. A finisher goroutine invalidates the
// changed accounts' cache entries and then answers the group's callers, so
// no caller reads a stale balance after its answer, while the committer
// already gathers the next group.
func (c *committer) run(ctx context.Context) {
	done := make(chan finished, 64)
	defer close(done)
	go func() {
		for f := range done {
			if c.onCommit != nil && len(f.touched) > 0 {
				c.onCommit(f.touched)
			}
			for _, u := range f.group {
				close(u.done)
			}
		}
	}()
	for {
		var first *unit
		select {
		case first = <-c.in:
		case <-ctx.Done():
			return
		}
		group, n := []*unit{first}, len(first.ops)
		var deadline <-chan time.Time
		if c.window > 0 {
			deadline = time.After(c.window)
		}
	gather:
		for n < c.maxOps {
			select {
			case u := <-c.in:
				group, n = append(group, u), n+len(u.ops)
			default:
				if deadline == nil {
					break gather
				}
				select {
				case u := <-c.in:
					group, n = append(group, u), n+len(u.ops)
				case <-deadline:
					break gather
				}
			}
		}
		done <- finished{group, c.commit(group, n)}
	}
}

// commit applies a group and returns the accounts it changed.
func (c *committer) commit(group []*unit, n int) (touched []string) {
	defer func() {
		// A bug must cost one group its answer, not the process its life.
		if v := recover(); v != nil {
			slog.Error("group commit panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			failAll(group, fmt.Errorf("group commit panicked: %v", v))
		}
	}()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	groupSize.Observe(float64(n))
	defer func() { groupSeconds.Observe(time.Since(start).Seconds()) }()

	if err := c.ensureSystemAccounts(ctx, group); err != nil {
		failAll(group, err)
		return nil
	}
	var err error
	for attempt := 1; attempt <= postgres.MaxAttempts; attempt++ {
		touched, err = c.tryCommit(ctx, group)
		if err == nil {
			return touched
		}
		_, dup := postgres.UniqueViolation(err)
		if !postgres.Retryable(err) && !dup {
			break
		}
		// A deadlock with another writer, or a replica that used the same
		// idempotency key a moment earlier: decide the group again.
		groupRetries.Inc()
		for _, u := range group {
			for _, o := range u.ops {
				o.res = outcome{}
			}
		}
	}
	slog.Error("group commit failed", "transfers", n, "err", err.Error())
	failAll(group, &problem.Error{Code: problem.Unavailable, Detail: "the ledger could not commit; retry with the same Idempotency-Key",
		RetryAfter: time.Second, Err: err})
	return nil
}

// failAll answers every op of a group that did not commit with err. Every
// outcome is replaced, including those decided inside the transaction that
// failed: a transfer decided "posted" but never committed must not be
// answered 201 (its caller retries with the same key instead).
func failAll(group []*unit, err error) {
	for _, u := range group {
		for _, o := range u.ops {
			o.res = outcome{err: err, done: true}
		}
	}
}

// ensureSystemAccounts creates the system accounts (SYS-<ROLE>-<CUR>) the
// group names by number, on first use, before the group's transaction.
func (c *committer) ensureSystemAccounts(ctx context.Context, group []*unit) error {
	var missing []string
	c.sysMu.Lock()
	for _, u := range group {
		for _, o := range u.ops {
			if !o.principal.Privileged() {
				continue // a customer cannot conjure a system account
			}
			for _, n := range []string{o.req.FromAccountNumber, o.req.ToAccountNumber} {
				if _, ok := isSystemNumber(n); ok && !c.sys[n] {
					missing = append(missing, n)
				}
			}
		}
	}
	c.sysMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	for _, n := range missing {
		cur, _ := isSystemNumber(n)
		id, _ := uuid.NewV7()
		if _, err := c.pool.Exec(ctx, `INSERT INTO accounts (id, user_id, account_number, currency, allow_negative)
			VALUES ($1, $2, $3, $4, true) ON CONFLICT (account_number) DO NOTHING`, id.String(), SystemUser, n, cur); err != nil {
			return err
		}
	}
	c.sysMu.Lock()
	for _, n := range missing {
		c.sys[n] = true
	}
	c.sysMu.Unlock()
	return nil
}

// acct is an account's state inside a group.
type acct struct {
	id, userID, number, currency, status string
	balance, held                        int64
	allowNegative                        bool
	changed                              int // transfers that changed it in this group
}

func (a *acct) available() int64 { return a.balance - a.held }

// acctCols are the accounts columns scanAccts reads, in its order.
const acctCols = `id, user_id, account_number, currency, balance, held, allow_negative, status`

// scanAccts reads rows of acctCols and indexes them by id and by account
// number; it closes rows.
func scanAccts(rows pgx.Rows) (byID, byNumber map[string]*acct, err error) {
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*acct, error) {
		a := &acct{}
		return a, r.Scan(&a.id, &a.userID, &a.number, &a.currency, &a.balance, &a.held, &a.allowNegative, &a.status)
	})
	if err != nil {
		return nil, nil, err
	}
	byID, byNumber = make(map[string]*acct, len(as)), make(map[string]*acct, len(as))
	for _, a := range as {
		byID[a.id], byNumber[a.number] = a, a
	}
	return byID, byNumber, nil
}

const transferCols = `t.id, t.from_account_id, t.to_account_id, t.amount, t.currency, t.status, t.reject_reason,
	t.description, t.reference_id, t.metadata, t.pending, t.captured_amount, t.expires_at, t.created_at, t.posted_at,
	t.from_balance, t.from_available, t.to_balance, t.to_available`

func scanTransfer(row pgx.Row, extra ...any) (*Transfer, error) {
	t := &Transfer{}
	dest := append([]any{&t.ID, &t.FromAccountID, &t.ToAccountID, &t.Amount, &t.Currency, &t.Status, &t.RejectReason,
		&t.Description, &t.ReferenceID, &t.Metadata, &t.Pending, &t.CapturedAmount, &t.ExpiresAt, &t.CreatedAt, &t.PostedAt,
		&t.FromBalance, &t.FromAvailable, &t.ToBalance, &t.ToAvailable}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	return t, nil
}

type idemKey struct{ scope, key string }

type prior struct {
	t    *Transfer
	hash []byte
}

// tryCommit runs the group's transaction and returns the accounts it changed.
func (c *committer) tryCommit(ctx context.Context, group []*unit) ([]string, error) {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()

	// Round trip 1: begin, lock the accounts, read used keys and the
	// asynchronously accepted transfers to decide.
	var ids, numbers, scopes, keys, completes []string
	for _, u := range group {
		for _, o := range u.ops {
			if o.complete != "" {
				// An accepted transfer's event names its accounts by id.
				completes = append(completes, o.complete)
				ids = append(ids, o.req.FromAccountID, o.req.ToAccountID)
				continue
			}
			for _, id := range []string{o.req.FromAccountID, o.req.ToAccountID} {
				if id != "" {
					ids = append(ids, id)
				}
			}
			for _, n := range []string{o.req.FromAccountNumber, o.req.ToAccountNumber} {
				if n != "" {
					numbers = append(numbers, n)
				}
			}
			scopes, keys = append(scopes, o.scope), append(keys, o.key)
		}
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if len(completes) > 0 {
		// Accepted transfers name their accounts by id; lock them too.
		b.Queue(`SELECT `+transferCols+` FROM transfers t WHERE t.id = ANY($1::text[]::uuid[]) ORDER BY t.id FOR UPDATE`, completes)
	}
	// Plain predicates only: under READ COMMITTED, FOR UPDATE re-checks a
	// row another transaction changed meanwhile, and that re-check is only
	// reliable for simple conditions on the row itself (with a semi-join it
	// can drop the row — seen with concurrent committers). Postgres reads
	// the two conditions through the primary key and the account_number
	// index (BitmapOr), and locks in id order.
	b.Queue(`SELECT `+acctCols+` FROM accounts
		WHERE id = ANY($1::text[]::uuid[]) OR account_number = ANY($2::text[])
		ORDER BY id FOR UPDATE`, ids, numbers)
	b.Queue(`SELECT `+transferCols+`, t.idem_scope, t.idem_key, t.request_hash FROM transfers t
		JOIN unnest($1::text[], $2::text[]) AS k(s, k) ON t.idem_scope = k.s AND t.idem_key = k.k`, scopes, keys)

	br := conn.SendBatch(ctx, b)
	var accounts, byNumber map[string]*acct
	priors := map[idemKey]prior{}
	accepted := map[string]*Transfer{}
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if len(completes) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				t, err := scanTransfer(rows)
				if err != nil {
					rows.Close()
					return err
				}
				accepted[t.ID] = t
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		if accounts, byNumber, err = scanAccts(rows); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var k idemKey
			var h []byte
			t, err := scanTransfer(rows, &k.scope, &k.key, &h)
			if err != nil {
				rows.Close()
				return err
			}
			priors[k] = prior{t, h}
		}
		rows.Close()
		return rows.Err()
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback(conn)
		return nil, err
	}

	// Decide every transfer in Go.
	now := c.now().UTC().Truncate(time.Microsecond)
	w := &writes{now: now}
	for _, u := range group {
		c.decideUnit(u, accounts, byNumber, priors, accepted, w)
	}

	// Round trip 2: write everything and commit.
	for _, a := range accounts {
		if a.changed > 0 {
			w.acctIDs = append(w.acctIDs, a.id)
			w.acctBal = append(w.acctBal, a.balance)
			w.acctHeld = append(w.acctHeld, a.held)
			w.acctN = append(w.acctN, int64(a.changed))
		}
	}
	if err := w.flush(ctx, conn, c.source); err != nil {
		rollback(conn)
		return nil, err
	}
	return w.acctIDs, nil
}

func rollback(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		// The connection is in an unknown state: do not reuse it.
		_ = conn.Conn().Close(ctx)
	}
}

// decideUnit decides the ops of one unit, all-or-nothing when atomic.
func (c *committer) decideUnit(u *unit, accounts map[string]*acct, byNumber map[string]*acct,
	priors map[idemKey]prior, accepted map[string]*Transfer, w *writes) {
	var snapshot map[string]acct
	mark := w.mark()
	if u.atomic {
		snapshot = make(map[string]acct, len(accounts))
		for id, a := range accounts {
			snapshot[id] = *a
		}
	}
	failed := false
	for _, o := range u.ops {
		c.decide(o, accounts, byNumber, priors, accepted, w)
		if o.res.err != nil {
			failed = true
		}
	}
	if !u.atomic || !failed {
		return
	}
	// Undo the unit: restore balances, drop its writes, report every item.
	for id, a := range snapshot {
		*accounts[id] = a
	}
	w.reset(mark)
	for _, o := range u.ops {
		if o.res.err == nil {
			o.res = outcome{err: problem.New(BatchRejected, "not applied: another transfer of this atomic batch was rejected"), done: true}
		} else if o.res.transfer != nil && !o.res.replayed {
			o.res = outcome{err: problem.New(problem.Code(*o.res.transfer.RejectReason), "%s", rejectionDetail(o.res.transfer)), done: true}
		}
		delete(priors, idemKey{o.scope, o.key})
	}
}

func rejectionDetail(t *Transfer) string {
	return fmt.Sprintf("%s (nothing of the atomic batch was applied)", *t.RejectReason)
}

func (c *committer) decide(o *op, accounts, byNumber map[string]*acct, priors map[idemKey]prior,
	accepted map[string]*Transfer, w *writes) {
	if o.complete != "" {
		c.decideAccepted(o, accounts, accepted, w)
		return
	}
	k := idemKey{o.scope, o.key}
	if p, ok := priors[k]; ok {
		if string(p.hash) != string(o.hash) {
			o.res = outcome{err: reusedKey(o), done: true}
			return
		}
		t := *p.t
		fillOwners(&t, accounts)
		o.res = outcome{transfer: &t, replayed: true, done: true}
		if t.Status == TransferRejected {
			o.res.err = rejection(&t)
		}
		return
	}
	from, to := lookup(o.req.FromAccountID, o.req.FromAccountNumber, accounts, byNumber),
		lookup(o.req.ToAccountID, o.req.ToAccountNumber, accounts, byNumber)
	switch {
	case from == nil || !o.principal.CanAccess(from.userID):
		o.res = outcome{err: problem.New(problem.NotFound, "no such source account"), done: true}
		return
	case to == nil:
		o.res = outcome{err: problem.New(problem.NotFound, "no such destination account"), done: true}
		return
	case from == to:
		o.res = outcome{err: problem.New(SameAccount, "a transfer needs two different accounts"), done: true}
		return
	}
	t := &Transfer{ID: o.id, FromAccountID: from.id, ToAccountID: to.id, Amount: o.req.Amount, Currency: o.req.Currency,
		Description: o.req.Description, ReferenceID: o.req.ReferenceID, Metadata: o.req.Metadata,
		Pending: o.req.Pending, ExpiresAt: o.req.ExpiresAt, CreatedAt: w.now, fromUser: from.userID, toUser: to.userID}
	apply(t, from, to, w.now)
	w.insert(t, o, c.source)
	priors[k] = prior{t, o.hash} // a second request with this key in the group replays this one
	o.res = outcome{transfer: t, done: true}
	if t.Status == TransferRejected {
		o.res.err = rejection(t)
	}
}

// decideAccepted decides a transfer accepted earlier with 202.
func (c *committer) decideAccepted(o *op, accounts map[string]*acct, accepted map[string]*Transfer, w *writes) {
	t, ok := accepted[o.complete]
	if !ok {
		o.res = outcome{err: events.Permanent(fmt.Errorf("transfer %s does not exist", o.complete)), done: true}
		return
	}
	fillOwners(t, accounts)
	if t.Status != TransferPending {
		o.res = outcome{transfer: t, replayed: true, done: true} // decided already
		return
	}
	t.Status = "" // to be decided now
	apply(t, accounts[t.FromAccountID], accounts[t.ToAccountID], w.now)
	w.update(t, c.source)
	o.res = outcome{transfer: t, done: true}
}

func fillOwners(t *Transfer, accounts map[string]*acct) {
	if a := accounts[t.FromAccountID]; a != nil {
		t.fromUser = a.userID
	}
	if a := accounts[t.ToAccountID]; a != nil {
		t.toUser = a.userID
	}
}

func lookup(id, number string, accounts, byNumber map[string]*acct) *acct {
	if id != "" {
		return accounts[id]
	}
	return byNumber[number]
}

// apply decides t against the running balances and moves the money (or
// reserves it, for a hold). It sets t's status, reason and balances.
func apply(t *Transfer, from, to *acct, now time.Time) {
	reject := func(code problem.Code) { t.Status, t.RejectReason = TransferRejected, reason(code) }
	switch {
	case t.Currency != from.currency || t.Currency != to.currency:
		reject(CurrencyMismatch)
	case from.status == StatusClosed || to.status == StatusClosed:
		reject(AccountClosed)
	case from.status == StatusFrozen:
		reject(AccountFrozen) // a frozen account still receives credits
	case !from.allowNegative && from.available() < t.Amount:
		reject(InsufficientFunds)
	}
	if t.Status == "" {
		if t.Pending {
			if held, err := money.Add(from.held, t.Amount); err == nil {
				from.held = held
				from.changed++
				t.Status = TransferHeld
			} else {
				reject(AmountInvalid)
			}
		} else {
			fb, err1 := money.Sub(from.balance, t.Amount)
			tb, err2 := money.Add(to.balance, t.Amount)
			if err1 != nil || err2 != nil {
				reject(AmountInvalid)
			} else {
				from.balance, to.balance = fb, tb
				from.changed++
				to.changed++
				t.Status = TransferPosted
				t.PostedAt = &now
			}
		}
	}
	fb, fa, tb, ta := from.balance, from.available(), to.balance, to.available()
	t.FromBalance, t.FromAvailable, t.ToBalance, t.ToAvailable = &fb, &fa, &tb, &ta
}

// writes accumulates the group's rows as column arrays for unnest.
type writes struct {
	now time.Time

	// new transfers
	tID, tFrom, tTo, tCur, tStatus, tDesc, tRef, tScope, tKey []string
	tAmount                                                   []int64
	tReason, tMeta                                            []*string
	tPending                                                  []bool
	tExpires, tPosted                                         []*time.Time
	tFB, tFA, tTB, tTA                                        []int64
	tHash                                                     [][]byte

	// decided accepted transfers
	uID, uStatus       []string
	uReason            []*string
	uPosted            []*time.Time
	uFB, uFA, uTB, uTA []int64

	// postings
	pTransfer, pAccount []string
	pAmount, pAfter     []int64

	// outbox
	oID, oTopic, oKey []string
	oPayload          [][]byte

	// accounts
	acctIDs           []string
	acctBal, acctHeld []int64
	acctN             []int64
}

type writeMark struct{ t, u, p, o int }

func (w *writes) mark() writeMark {
	return writeMark{len(w.tID), len(w.uID), len(w.pTransfer), len(w.oID)}
}

// reset drops everything written after m (an atomic unit that failed).
func (w *writes) reset(m writeMark) {
	w.tID, w.tFrom, w.tTo, w.tCur, w.tStatus = w.tID[:m.t], w.tFrom[:m.t], w.tTo[:m.t], w.tCur[:m.t], w.tStatus[:m.t]
	w.tDesc, w.tRef, w.tScope, w.tKey = w.tDesc[:m.t], w.tRef[:m.t], w.tScope[:m.t], w.tKey[:m.t]
	w.tAmount, w.tReason, w.tMeta, w.tPending = w.tAmount[:m.t], w.tReason[:m.t], w.tMeta[:m.t], w.tPending[:m.t]
	w.tExpires, w.tPosted, w.tHash = w.tExpires[:m.t], w.tPosted[:m.t], w.tHash[:m.t]
	w.tFB, w.tFA, w.tTB, w.tTA = w.tFB[:m.t], w.tFA[:m.t], w.tTB[:m.t], w.tTA[:m.t]
	w.uID, w.uStatus, w.uReason, w.uPosted = w.uID[:m.u], w.uStatus[:m.u], w.uReason[:m.u], w.uPosted[:m.u]
	w.uFB, w.uFA, w.uTB, w.uTA = w.uFB[:m.u], w.uFA[:m.u], w.uTB[:m.u], w.uTA[:m.u]
	w.pTransfer, w.pAccount, w.pAmount, w.pAfter = w.pTransfer[:m.p], w.pAccount[:m.p], w.pAmount[:m.p], w.pAfter[:m.p]
	w.oID, w.oTopic, w.oKey, w.oPayload = w.oID[:m.o], w.oTopic[:m.o], w.oKey[:m.o], w.oPayload[:m.o]
}

func (w *writes) insert(t *Transfer, o *op, source string) {
	var meta *string
	if len(t.Metadata) > 0 {
		s := string(t.Metadata)
		meta = &s
	}
	w.tID, w.tFrom, w.tTo = append(w.tID, t.ID), append(w.tFrom, t.FromAccountID), append(w.tTo, t.ToAccountID)
	w.tCur, w.tStatus = append(w.tCur, t.Currency), append(w.tStatus, t.Status)
	w.tDesc, w.tRef = append(w.tDesc, t.Description), append(w.tRef, t.ReferenceID)
	w.tScope, w.tKey, w.tHash = append(w.tScope, o.scope), append(w.tKey, o.key), append(w.tHash, o.hash)
	w.tAmount, w.tReason, w.tMeta = append(w.tAmount, t.Amount), append(w.tReason, t.RejectReason), append(w.tMeta, meta)
	w.tPending, w.tExpires, w.tPosted = append(w.tPending, t.Pending), append(w.tExpires, t.ExpiresAt), append(w.tPosted, t.PostedAt)
	w.tFB, w.tFA, w.tTB, w.tTA = append(w.tFB, *t.FromBalance), append(w.tFA, *t.FromAvailable), append(w.tTB, *t.ToBalance), append(w.tTA, *t.ToAvailable)
	w.effects(t, source)
}

func (w *writes) update(t *Transfer, source string) {
	w.uID, w.uStatus, w.uReason, w.uPosted = append(w.uID, t.ID), append(w.uStatus, t.Status), append(w.uReason, t.RejectReason), append(w.uPosted, t.PostedAt)
	w.uFB, w.uFA, w.uTB, w.uTA = append(w.uFB, *t.FromBalance), append(w.uFA, *t.FromAvailable), append(w.uTB, *t.ToBalance), append(w.uTA, *t.ToAvailable)
	w.effects(t, source)
}

// effects adds the postings and the event of a decided transfer.
func (w *writes) effects(t *Transfer, source string) {
	if t.Status == TransferPosted {
		w.pTransfer = append(w.pTransfer, t.ID, t.ID)
		w.pAccount = append(w.pAccount, t.FromAccountID, t.ToAccountID)
		w.pAmount = append(w.pAmount, -t.Amount, t.Amount)
		w.pAfter = append(w.pAfter, *t.FromBalance, *t.ToBalance)
	}
	typ := map[string]string{TransferPosted: "billfn.transaction.posted", TransferRejected: "billfn.transaction.rejected",
		TransferHeld: "billfn.hold.created"}[t.Status]
	w.event(typ, t, source)
}

func (w *writes) event(typ string, t *Transfer, source string) {
	id, payload, err := events.Encode(context.Background(), source, typ, t.FromAccountID, t)
	if err != nil {
		panic(err) // a Transfer always encodes
	}
	w.oID, w.oTopic, w.oKey, w.oPayload = append(w.oID, id), append(w.oTopic, events.TopicTransaction),
		append(w.oKey, t.FromAccountID), append(w.oPayload, payload)
}

// flush writes the group and commits, in one round trip.
func (w *writes) flush(ctx context.Context, conn *pgxpool.Conn, source string) error {
	b := &pgx.Batch{}
	if len(w.tID) > 0 {
		b.Queue(`INSERT INTO transfers (id, from_account_id, to_account_id, amount, currency, status, reject_reason,
			pending, expires_at, description, reference_id, metadata, from_balance, from_available, to_balance, to_available,
			idem_scope, idem_key, request_hash, created_at, posted_at)
			SELECT id, f, t, a, c, s, r, p, e, d, ref, m::jsonb, fb, fa, tb, ta, sc, k, h, $20, po
			FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::uuid[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::bool[],
			            $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::int8[], $14::int8[], $15::int8[],
			            $16::int8[], $17::text[], $18::text[], $19::bytea[], $21::timestamptz[])
			AS x(id, f, t, a, c, s, r, p, e, d, ref, m, fb, fa, tb, ta, sc, k, h, po)`,
			w.tID, w.tFrom, w.tTo, w.tAmount, w.tCur, w.tStatus, w.tReason, w.tPending, w.tExpires, w.tDesc, w.tRef,
			w.tMeta, w.tFB, w.tFA, w.tTB, w.tTA, w.tScope, w.tKey, w.tHash, w.now, w.tPosted)
	}
	if len(w.uID) > 0 {
		b.Queue(`UPDATE transfers t SET status = x.s, reject_reason = x.r, posted_at = x.po,
			from_balance = x.fb, from_available = x.fa, to_balance = x.tb, to_available = x.ta
			FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[], $6::int8[], $7::int8[], $8::int8[])
			AS x(id, s, r, po, fb, fa, tb, ta) WHERE t.id = x.id`,
			w.uID, w.uStatus, w.uReason, w.uPosted, w.uFB, w.uFA, w.uTB, w.uTA)
	}
	if len(w.pTransfer) > 0 {
		b.Queue(`INSERT INTO postings (transfer_id, account_id, amount, balance_after, created_at)
			SELECT t, a, m, ba, $5 FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::int8[], $4::int8[]) AS x(t, a, m, ba)`,
			w.pTransfer, w.pAccount, w.pAmount, w.pAfter, w.now)
	}
	if len(w.acctIDs) > 0 {
		b.Queue(`UPDATE accounts a SET balance = x.b, held = x.h, version = a.version + x.n, updated_at = $5
			FROM unnest($1::text[]::uuid[], $2::int8[], $3::int8[], $4::int8[]) AS x(id, b, h, n) WHERE a.id = x.id`,
			w.acctIDs, w.acctBal, w.acctHeld, w.acctN, w.now)
	}
	if len(w.oID) > 0 {
		b.Queue(`INSERT INTO outbox (source, event_id, topic, key, payload)
			SELECT $1, e, t, k, p FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) AS x(e, t, k, p)`,
			source, w.oID, w.oTopic, w.oKey, w.oPayload)
	}
	b.Queue("COMMIT")
	return conn.SendBatch(ctx, b).Close()
}

// requestHash fingerprints a transfer request for idempotency.
func requestHash(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// reusedKey is the problem of a key already used for another transfer: an
// HTTP caller's Idempotency-Key, or for an event its id (scope
// "event:<source>"), which the message must name as such.
func reusedKey(o *op) error {
	if src, ok := strings.CutPrefix(o.scope, "event:"); ok {
		return problem.New(problem.IdempotencyKeyReused,
			"event id %q from source %q was already used for a different transfer; a new event needs a new id", o.key, src)
	}
	return problem.New(problem.IdempotencyKeyReused, "this Idempotency-Key was used for a different transfer; use a new key for a new request")
}
