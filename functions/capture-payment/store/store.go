package store

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
)

// db is what a pool and a transaction have in common.
type db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const paymentCols = `id, account_id, user_id, invoice_id, amount, currency, status, capture_method, payment_method,
	gateway, gateway_payment_id, requested_gateway, amount_capturable, amount_captured, amount_refunded,
	amount_refund_pending, capture_count, refund_count, attempt_count, pending_op, op_started_at, description,
	metadata, last_error, cancellation_reason, gateway_updated_at, disputed_at, authorized_at, captured_at,
	canceled_at, created_at, updated_at, announced`

// scanPayment scans a row of paymentCols, followed by the columns of more
// when given.
func scanPayment(row pgx.Row, more ...any) (*payments.Payment, error) {
	p := &payments.Payment{}
	var reqGw *string
	err := row.Scan(append([]any{&p.ID, &p.AccountID, &p.UserID, &p.InvoiceID, &p.Amount, &p.Currency, &p.Status, &p.CaptureMethod,
		&p.PaymentMethod, &p.Gateway, &p.GatewayPaymentID, &reqGw, &p.AmountCapturable, &p.AmountCaptured,
		&p.AmountRefunded, &p.AmountRefundPending, &p.CaptureCount, &p.RefundCount, &p.Attempts, &p.PendingOperation,
		&p.OpStartedAt, &p.Description, &p.Metadata, &p.LastPaymentError, &p.CancellationReason, &p.GatewayUpdatedAt,
		&p.DisputedAt, &p.AuthorizedAt, &p.CapturedAt, &p.CanceledAt, &p.CreatedAt, &p.UpdatedAt, &p.Announced}, more...)...)
	if err != nil {
		return nil, err
	}
	if reqGw != nil {
		p.RequestedGateway = *reqGw
	}
	p.Finish()
	return p, nil
}

// paymentValues is the VALUES list of an insert of every payment column:
// $1 for the first of paymentCols, and so on (paymentArgs's order).
var paymentValues = valuesWith(nil)

// column is the index of the payment column name in paymentCols (and in
// paymentArgs); its placeholder is "$" + strconv.Itoa(column(name)+1).
func column(name string) int {
	for i, c := range strings.Split(paymentCols, ",") {
		if strings.TrimSpace(c) == name {
			return i
		}
	}
	panic("store: no payment column " + name)
}

// param is the placeholder of the payment column name in an insert's
// arguments (paymentArgs).
func param(name string) string { return "$" + strconv.Itoa(column(name)+1) }

// valuesWith is paymentValues with the expressions of with in place of the
// placeholders of the columns it names.
func valuesWith(with map[string]string) string {
	cols := strings.Split(paymentCols, ",")
	vals := make([]string, len(cols))
	for i, c := range cols {
		vals[i] = "$" + strconv.Itoa(i+1)
		if e, ok := with[strings.TrimSpace(c)]; ok {
			vals[i] = e
		}
	}
	return strings.Join(vals, ",")
}

func paymentArgs(p *payments.Payment) []any {
	return []any{p.ID, p.AccountID, p.UserID, p.InvoiceID, p.Amount, p.Currency, p.Status, p.CaptureMethod, p.PaymentMethod,
		p.Gateway, p.GatewayPaymentID, payments.Nullable(p.RequestedGateway), p.AmountCapturable, p.AmountCaptured, p.AmountRefunded,
		p.AmountRefundPending, p.CaptureCount, p.RefundCount, p.Attempts, p.PendingOperation, p.OpStartedAt, p.Description,
		p.Metadata, p.LastPaymentError, p.CancellationReason, p.GatewayUpdatedAt, p.DisputedAt, p.AuthorizedAt,
		p.CapturedAt, p.CanceledAt, p.CreatedAt, p.UpdatedAt, p.Announced}
}

// InsertPayment inserts p; it reports false when a payment with p's id
// already exists (a request re-run after a crash).
func (t Tx) InsertPayment(ctx context.Context, p *payments.Payment) (bool, error) {
	q := t.q
	tag, err := q.Exec(ctx, `INSERT INTO payments (`+paymentCols+`) VALUES (`+paymentValues+`) ON CONFLICT (id) DO NOTHING`,
		paymentArgs(p)...)
	return err == nil && tag.RowsAffected() == 1, err
}

// accountGuard is the CTE "acct" of a guarded insert (see
// payments.AccountGuard): the owner of the payment's account (account_id)
// when the read model has it active in the payment's currency, owned by
// the customer caller ($owner, NULL for admin and service: auth's
// CanAccess) and by the user_id the caller sent (empty for none). Owners
// are compared as text, as CanAccess compares them. The payment's user_id
// is acct's, never the one sent.
func accountGuard(owner int) string {
	o, sent := "$"+strconv.Itoa(owner), param("user_id")
	return `acct AS (SELECT user_id FROM payment_accounts WHERE id = ` + param("account_id") + ` AND status = 'active'
			AND upper(currency) = upper(` + param("currency") + `::text) AND (` + sent + `::text = '' OR user_id::text = ` + sent + `::text)
			AND (` + o + `::text IS NULL OR user_id::text = ` + o + `::text))`
}

// guardedValues is the SELECT of a guarded insert's payment: paymentValues
// with the account's owner for user_id.
var guardedValues = valuesWith(map[string]string{"user_id": "acct.user_id"}) + ` FROM acct`

// guardedArgs are p's insert arguments with g's user_id in place of p's
// (which only the guard reads).
func guardedArgs(p *payments.Payment, g payments.AccountGuard) []any {
	args := paymentArgs(p)
	args[column("user_id")] = g.UserID
	return args
}

// guardedOutcome turns a guarded insert's row (payments inserted, accounts
// that passed the guard, the owner) into InsertPaymentFor's answer.
func guardedOutcome(p *payments.Payment, inserted, passed int, owner string) (bool, error) {
	if passed == 0 {
		return false, payments.ErrAccountUnchecked
	}
	p.UserID = owner
	return inserted == 1, nil
}

// InsertPaymentFor inserts p as InsertPayment does, guarded by g in the
// same statement (payments.AccountGuard): one statement, no read of the
// account before it.
func (t Tx) InsertPaymentFor(ctx context.Context, p *payments.Payment, g payments.AccountGuard) (bool, error) {
	var (
		inserted, passed int
		owner            string
	)
	if err := t.q.QueryRow(ctx, insertPaymentGuarded, append(guardedArgs(p, g), g.Owner)...).Scan(&inserted, &passed, &owner); err != nil {
		return false, err
	}
	return guardedOutcome(p, inserted, passed, owner)
}

// insertPaymentGuarded is InsertPaymentFor's statement: the payment
// ($1–$33) guarded by the account (acct, owner $34). Its row: payments
// inserted (1 or 0), the accounts that passed the guard, their owner.
var insertPaymentGuarded = `WITH ` + accountGuard(34) + `,
		p AS (INSERT INTO payments (` + paymentCols + `) SELECT ` + guardedValues + ` ON CONFLICT (id) DO NOTHING RETURNING 1)
		SELECT (SELECT count(*)::int FROM p), (SELECT count(*)::int FROM acct), coalesce((SELECT user_id::text FROM acct), '')`

// confirmingSQL is InsertConfirming's statement: the payment ($1–$33) with
// its first attempt ($34–$37), guarded by the account (acct, owner $38)
// when guarded. Its row: attempts inserted (1 or 0), and, when guarded,
// the accounts that passed the guard and their owner.
func confirmingSQL(guarded bool) string {
	with, values, tail := `WITH `, `VALUES (`+paymentValues+`)`, ``
	if guarded {
		with, values = `WITH `+accountGuard(38)+`, `, `SELECT `+guardedValues
		tail = `, (SELECT count(*)::int FROM acct), coalesce((SELECT user_id::text FROM acct), '')`
	}
	return with + `p AS (
			INSERT INTO payments (` + paymentCols + `) ` + values + ` ON CONFLICT (id) DO NOTHING RETURNING id),
		a AS (INSERT INTO payment_attempts (payment_id, n, gateway, payment_method, status, started_at)
			SELECT id, $34, $35, $36, 'pending', $37 FROM p RETURNING 1)
		SELECT (SELECT count(*)::int FROM a)` + tail
}

var (
	insertConfirming        = confirmingSQL(false)
	insertConfirmingGuarded = confirmingSQL(true)
)

// InsertConfirming records a new payment and its first attempt in one
// statement (atomic on its own): the intent to charge, before the gateway
// is called. It reports false when the payment exists.
// On the pool, concurrent requests' intents share a transaction and its
// commit (the store's groups), asynchronous for the sandbox (asyncCommit).
func (t Tx) InsertConfirming(ctx context.Context, p *payments.Payment, a payments.Attempt) (bool, error) {
	var inserted int
	err := t.confirming(ctx, insertConfirming, append(paymentArgs(p), a.N, a.Gateway, a.PaymentMethod, a.StartedAt), a, &inserted)
	return err == nil && inserted == 1, err
}

// InsertConfirmingFor is InsertConfirming guarded by g in the same
// statement (payments.AccountGuard): the payment, its attempt and the
// account check are one write, grouped as InsertConfirming's are (a guard
// that refuses writes nothing, so grouping holds).
func (t Tx) InsertConfirmingFor(ctx context.Context, p *payments.Payment, a payments.Attempt, g payments.AccountGuard) (bool, error) {
	var (
		inserted, passed int
		owner            string
	)
	args := append(guardedArgs(p, g), a.N, a.Gateway, a.PaymentMethod, a.StartedAt, g.Owner)
	// The request's Idempotency-Key, when its claim is deferred
	// (idempotency.Store.Deferred), is claimed by this statement: no
	// round trip nor commit of its own. A key not free writes nothing.
	if cargs, ok := idempotency.ClaimIn(ctx); ok {
		var claimed int
		if err := t.confirming(ctx, insertConfirmingClaiming, append(args, cargs...), a, &inserted, &passed, &owner, &claimed); err != nil {
			return false, err
		}
		if !idempotency.Took(ctx, claimed) {
			return false, idempotency.ErrClaimLost
		}
		return guardedOutcome(p, inserted, passed, owner)
	}
	if err := t.confirming(ctx, insertConfirmingGuarded, args, a, &inserted, &passed, &owner); err != nil {
		return false, err
	}
	return guardedOutcome(p, inserted, passed, owner)
}

// insertConfirmingClaiming is insertConfirmingGuarded that also claims the
// request's Idempotency-Key (the CTE "k", idempotency.ClaimCTE, its
// arguments $39–$45 after the owner's $38): the payment and its attempt
// are written only if the key was taken; its row ends with the keys
// taken. The claim is taken whatever the guard says (it must be, for the
// answer AuthorizeAccount then gives, as before).
var insertConfirmingClaiming = `WITH ` + idempotency.ClaimCTE("k", 39) + `, ` + accountGuard(38) + `, p AS (
			INSERT INTO payments (` + paymentCols + `) SELECT ` + guardedValues + ` WHERE EXISTS (SELECT FROM k)
			ON CONFLICT (id) DO NOTHING RETURNING id),
		a AS (INSERT INTO payment_attempts (payment_id, n, gateway, payment_method, status, started_at)
			SELECT id, $34, $35, $36, 'pending', $37 FROM p RETURNING 1)
		SELECT (SELECT count(*)::int FROM a), (SELECT count(*)::int FROM acct), coalesce((SELECT user_id::text FROM acct), ''),
			(SELECT count(*)::int FROM k)`

// confirming runs an insert of a payment with its first attempt, whose row
// starts with the attempts inserted, and scans its row into dest.
func (t Tx) confirming(ctx context.Context, sql string, args []any, a payments.Attempt, dest ...any) error {
	if _, ok := t.q.(*pgxpool.Pool); ok && t.s != nil {
		g := t.s.group
		if a.Gateway == payments.GatewaySandbox {
			g = t.s.async
		}
		inserted := dest[0].(*int)
		// A payment that exists, or a guard that refuses, writes nothing:
		// grouping holds.
		_, err := g.Do(ctx, pgbatch.Write{Guard: pgbatch.Guard{SQL: sql, Args: args, Dest: dest,
			Proceed: func() bool { return *inserted == 1 }}})
		return err
	}
	return t.q.QueryRow(ctx, sql, args...).Scan(dest...)
}

// updateSet assigns every mutable column from paymentUpdateArgs ($1 = id).
const updateSet = `status = $2, payment_method = $3, gateway = $4, gateway_payment_id = $5,
		amount_capturable = $6, amount_captured = $7, amount_refunded = $8, amount_refund_pending = $9,
		capture_count = $10, refund_count = $11, attempt_count = $12, pending_op = $13, op_started_at = $14,
		last_error = $15, cancellation_reason = $16, gateway_updated_at = $17, disputed_at = $18,
		authorized_at = $19, captured_at = $20, canceled_at = $21, updated_at = $22, announced = $23`

func paymentUpdateArgs(p *payments.Payment) []any {
	return []any{p.ID, p.Status, p.PaymentMethod, p.Gateway, p.GatewayPaymentID, p.AmountCapturable, p.AmountCaptured,
		p.AmountRefunded, p.AmountRefundPending, p.CaptureCount, p.RefundCount, p.Attempts, p.PendingOperation,
		p.OpStartedAt, p.LastPaymentError, p.CancellationReason, p.GatewayUpdatedAt, p.DisputedAt, p.AuthorizedAt,
		p.CapturedAt, p.CanceledAt, p.UpdatedAt, p.Announced}
}

// UpdatePayment writes every mutable member of p.
func (t Tx) UpdatePayment(ctx context.Context, p *payments.Payment) error {
	q := t.q
	_, err := q.Exec(ctx, `UPDATE payments SET `+updateSet+` WHERE id = $1`, paymentUpdateArgs(p)...)
	return err
}

// UpdatePaymentStarting writes every mutable member of p and inserts its
// new attempt a (as InsertAttempt does), in one statement.
func (t Tx) UpdatePaymentStarting(ctx context.Context, p *payments.Payment, a payments.Attempt) error {
	_, err := t.q.Exec(ctx, `WITH att AS (INSERT INTO payment_attempts (payment_id, n, gateway, payment_method, status, started_at)
			VALUES ($1, $24, $25, $26, $27, $28) ON CONFLICT DO NOTHING)
		UPDATE payments SET `+updateSet+` WHERE id = $1`,
		append(paymentUpdateArgs(p), a.N, a.Gateway, a.PaymentMethod, a.Status, a.StartedAt)...)
	return err
}

// guardedUpdate is the statement that writes p only if the payment is
// still at version (its updated_at), with attempt a when a.N > 0. When the
// payment moved since, it writes nothing and fails (movedError), which
// aborts the transaction it is in: what follows it in that transaction is
// not written either, without a round trip to learn its answer first.
func guardedUpdate(p *payments.Payment, version time.Time, a payments.Attempt) (string, []any) {
	args := append(paymentUpdateArgs(p), version, a.N, a.Status, a.GatewayPaymentID, a.FailureCode, a.DeclineCode,
		a.FailureReason, a.FailureMessage, a.GatewayError, a.FinishedAt)
	return `WITH pay AS (UPDATE payments SET ` + updateSet + ` WHERE id = $1 AND updated_at = $24 RETURNING 1),
		att AS (UPDATE payment_attempts SET status = $26, gateway_payment_id = $27, failure_code = $28,
			decline_code = $29, failure_reason = $30, failure_message = $31, gateway_error = $32, finished_at = $33
			WHERE payment_id = $1 AND n = $25 AND EXISTS (SELECT 1 FROM pay) RETURNING 1)
		SELECT CASE count(*) WHEN 1 THEN 1 ELSE ('` + movedMark + `' || count(*))::int END FROM pay`, args
}

// movedMark starts the text guardedUpdate fails to read as a number when
// the payment moved since the flow's version.
const movedMark = "billfn: the payment moved since its version; payments written: "

// movedError reports whether err is guardedUpdate's failure for a payment
// that moved (invalid_text_representation of its mark).
func movedError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22P02" && strings.Contains(pgErr.Message, movedMark)
}

// PaymentWithAccount is Payment with the read model's facts of the
// payment's account (known false when it does not know them), read in the
// same statement: one round trip where Payment and Account take two.
func (t Tx) PaymentWithAccount(ctx context.Context, id string, lock bool) (*payments.Payment, accounts.Facts, bool, error) {
	if t.s == nil || t.s.Accounts == nil {
		p, err := t.Payment(ctx, id, lock)
		return p, accounts.Facts{}, false, err
	}
	sql := `SELECT ` + prefixed("p.", paymentCols) + `, a.id::text, a.user_id::text, a.currency, a.status, a.version
		FROM payments p LEFT JOIN payment_accounts a ON a.id = p.account_id WHERE p.id = $1`
	if lock {
		sql += ` FOR UPDATE OF p`
	}
	var (
		aid, user, currency, status *string
		version                     *int64
	)
	p, err := scanPayment(t.q.QueryRow(ctx, sql, id), &aid, &user, &currency, &status, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, accounts.Facts{}, false, payments.ErrNotFound
	}
	if err != nil || aid == nil {
		return p, accounts.Facts{}, false, err
	}
	return p, accounts.Facts{ID: *aid, UserID: *user, Currency: *currency, Status: *status, Version: *version}, true, nil
}

func (t Tx) Payment(ctx context.Context, id string, lock bool) (*payments.Payment, error) {
	q := t.q
	sql := `SELECT ` + paymentCols + ` FROM payments WHERE id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	p, err := scanPayment(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNotFound
	}
	return p, err
}

func (t Tx) PaymentByGatewayID(ctx context.Context, gateway, gatewayPaymentID string, lock bool) (*payments.Payment, error) {
	q := t.q
	sql := `SELECT ` + paymentCols + ` FROM payments WHERE gateway = $1 AND gateway_payment_id = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	p, err := scanPayment(q.QueryRow(ctx, sql, gateway, gatewayPaymentID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNotFound
	}
	return p, err
}

func (t Tx) Payments(ctx context.Context, f payments.PaymentFilter) ([]*payments.Payment, error) {
	q := t.q
	var w postgres.Where
	w.Filter("user_id", f.UserID)
	w.Filter("account_id", f.AccountID)
	w.Filter("invoice_id", f.InvoiceID)
	w.Filter("status", f.Status)
	if f.After != nil {
		w.And("(created_at, id) < (?, ?::uuid)", f.After.CreatedAt, f.After.ID)
	}
	rows, err := q.Query(ctx, `SELECT `+paymentCols+` FROM payments`+w.SQL()+
		` ORDER BY created_at DESC, id DESC LIMIT `+w.Arg(f.Limit+1), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*payments.Payment, error) { return scanPayment(r) })
}

func (t Tx) InsertAttempt(ctx context.Context, paymentID string, a payments.Attempt) error {
	q := t.q
	_, err := q.Exec(ctx, `INSERT INTO payment_attempts (payment_id, n, gateway, payment_method, status, started_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`, paymentID, a.N, a.Gateway, a.PaymentMethod, a.Status, a.StartedAt)
	return err
}

func (t Tx) FinishAttempt(ctx context.Context, paymentID string, a payments.Attempt) error {
	q := t.q
	_, err := q.Exec(ctx, `UPDATE payment_attempts SET status = $3, gateway_payment_id = $4, failure_code = $5,
		decline_code = $6, failure_reason = $7, failure_message = $8, gateway_error = $9, finished_at = $10
		WHERE payment_id = $1 AND n = $2`, paymentID, a.N, a.Status, a.GatewayPaymentID, a.FailureCode, a.DeclineCode,
		a.FailureReason, a.FailureMessage, a.GatewayError, a.FinishedAt)
	return err
}

func (t Tx) Attempts(ctx context.Context, paymentID string) ([]payments.Attempt, error) {
	q := t.q
	rows, err := q.Query(ctx, `SELECT n, gateway, payment_method, status, gateway_payment_id, failure_code, decline_code,
		failure_reason, failure_message, gateway_error, started_at, finished_at
		FROM payment_attempts WHERE payment_id = $1 ORDER BY n`, paymentID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (payments.Attempt, error) {
		var a payments.Attempt
		err := r.Scan(&a.N, &a.Gateway, &a.PaymentMethod, &a.Status, &a.GatewayPaymentID, &a.FailureCode, &a.DeclineCode,
			&a.FailureReason, &a.FailureMessage, &a.GatewayError, &a.StartedAt, &a.FinishedAt)
		return a, err
	})
}

const refundCols = `r.id, r.payment_id, r.N, r.account_id, r.user_id, r.invoice_id, r.amount, r.currency, r.gateway,
	r.gateway_refund_id, p.gateway_payment_id, r.status, r.reason, r.failure_reason, r.ledger_hold_id, r.hold_source, r.created_at, r.updated_at, r.withheld,
	r.failed_at`

func scanRefund(row pgx.Row) (*payments.Refund, error) {
	r := &payments.Refund{}
	err := row.Scan(&r.ID, &r.PaymentID, &r.N, &r.AccountID, &r.UserID, &r.InvoiceID, &r.Amount, &r.Currency, &r.Gateway,
		&r.GatewayRefundID, &r.GatewayPaymentID, &r.Status, &r.Reason, &r.FailureReason, &r.LedgerHoldID, &r.HoldSource, &r.CreatedAt, &r.UpdatedAt, &r.Withheld,
		&r.FailedAt)
	return r, err
}

func (t Tx) Refund(ctx context.Context, id string, lock bool) (*payments.Refund, error) {
	q := t.q
	sql := `SELECT ` + refundCols + ` FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`
	if lock {
		sql += ` FOR UPDATE OF r`
	}
	r, err := scanRefund(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNoRefund
	}
	return r, err
}

func (t Tx) RefundByGatewayID(ctx context.Context, gateway, gatewayRefundID string) (*payments.Refund, error) {
	q := t.q
	r, err := scanRefund(q.QueryRow(ctx, `SELECT `+refundCols+` FROM refunds r JOIN payments p ON p.id = r.payment_id
		WHERE r.gateway = $1 AND r.gateway_refund_id = $2 FOR UPDATE OF r`, gateway, gatewayRefundID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNoRefund
	}
	return r, err
}

func (t Tx) RefundedWithGatewayIDs(ctx context.Context, paymentID string) (int64, error) {
	var n int64
	err := t.q.QueryRow(ctx, `SELECT coalesce(sum(amount), 0)::bigint FROM refunds
		WHERE payment_id = $1 AND gateway_refund_id IS NOT NULL AND status IN ('succeeded', 'pending', 'requires_action')`, paymentID).Scan(&n)
	return n, err
}

func (t Tx) FailedSince(ctx context.Context, paymentID string, at time.Time) (int64, error) {
	var n int64
	err := t.q.QueryRow(ctx, `SELECT coalesce(sum(amount), 0)::bigint FROM refunds
		WHERE payment_id = $1 AND gateway_refund_id IS NOT NULL AND status IN ('failed', 'canceled') AND failed_at >= $2`, paymentID, at).Scan(&n)
	return n, err
}

func (t Tx) UnnamedGatewayRefunds(ctx context.Context, paymentID string) ([]*payments.Refund, error) {
	rows, err := t.q.Query(ctx, `SELECT `+refundCols+` FROM refunds r JOIN payments p ON p.id = r.payment_id
		WHERE r.payment_id = $1 AND r.reason = 'gateway' AND r.gateway_refund_id IS NULL AND r.ledger_hold_id IS NULL
		AND r.status = 'succeeded' ORDER BY r.n FOR UPDATE OF r`, paymentID)
	return collectRefunds(rows, err)
}

// collectRefunds reads the refunds a query of refundCols returned.
func collectRefunds(rows pgx.Rows, err error) ([]*payments.Refund, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*payments.Refund, error) { return scanRefund(row) })
}

func (t Tx) Refunds(ctx context.Context, paymentID string) ([]*payments.Refund, error) {
	q := t.q
	rows, err := q.Query(ctx, `SELECT `+refundCols+` FROM refunds r JOIN payments p ON p.id = r.payment_id
		WHERE r.payment_id = $1 ORDER BY r.N`, paymentID)
	return collectRefunds(rows, err)
}

// InsertRefund inserts r; false when it exists (a re-run).
func (t Tx) InsertRefund(ctx context.Context, r *payments.Refund) (bool, error) {
	q := t.q
	tag, err := q.Exec(ctx, `INSERT INTO refunds (id, payment_id, n, account_id, user_id, invoice_id, amount, currency,
		status, reason, gateway, gateway_refund_id, failure_reason, created_at, updated_at, hold_source, failed_at, withheld)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.PaymentID, r.N, r.AccountID, r.UserID, r.InvoiceID, r.Amount, r.Currency, r.Status, r.Reason, r.Gateway,
		r.GatewayRefundID, r.FailureReason, r.CreatedAt, r.UpdatedAt, r.HoldSource, r.FailedAt, r.Withheld)
	return err == nil && tag.RowsAffected() == 1, err
}

func (t Tx) UpdateRefund(ctx context.Context, r *payments.Refund) error {
	q := t.q
	_, err := q.Exec(ctx, `UPDATE refunds SET status = $2, gateway_refund_id = $3, failure_reason = $4, updated_at = $5,
		ledger_hold_id = $6, withheld = $7, failed_at = $8, amount = $9 WHERE id = $1`, r.ID, r.Status, r.GatewayRefundID, r.FailureReason, r.UpdatedAt,
		r.LedgerHoldID, r.Withheld, r.FailedAt, r.Amount)
	return err
}

// Withhold records on the refunds of invoice payment paymentID on revenue
// (as RefundedFromRevenue counts them), what of reported each kept out of
// the account's credit: reported shared out up to each one's amount, the
// succeeded ones first, then the pending ones, each in their order. A
// succeeded one gives it back if it fails after all (reverseRefund), a
// pending one if it fails (settleRefund).
func (t Tx) Withhold(ctx context.Context, paymentID string, reported int64) error {
	_, err := t.q.Exec(ctx, `WITH rev AS (SELECT id, amount, coalesce(sum(amount) OVER (ORDER BY status = 'pending', n
				ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before FROM refunds
			WHERE payment_id = $1 AND coalesce(hold_source, 'revenue') = 'revenue' AND status IN ('pending', 'succeeded'))
		UPDATE refunds r SET withheld = least(rev.amount, greatest($2 - rev.before, 0)) FROM rev WHERE r.id = rev.id`,
		paymentID, reported)
	return err
}

// AddUnapplied credits amount more of invoice payment paymentID to its
// account (a refund that had it withheld failed).
func (t Tx) AddUnapplied(ctx context.Context, paymentID string, amount int64) error {
	_, err := t.q.Exec(ctx, `UPDATE payments SET amount_unapplied = amount_unapplied + $2 WHERE id = $1`, paymentID, amount)
	return err
}

// Credit returns what of invoice payment paymentID was credited to its
// account (amount_unapplied) and what refunds took from the account so far
// (pending or succeeded); payments.HoldSource decides from them.
func (t Tx) Credit(ctx context.Context, paymentID string) (unapplied, fromAccount int64, err error) {
	err = t.q.QueryRow(ctx, `SELECT amount_unapplied,
		(SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = $1 AND hold_source = 'account' AND status IN ('pending', 'succeeded'))
		FROM payments WHERE id = $1`, paymentID).Scan(&unapplied, &fromAccount)
	return unapplied, fromAccount, err
}

// RefundedFromRevenue is what refunds of invoice payment paymentID took
// from revenue so far (pending or succeeded): those held on revenue, and
// those made at the gateway itself, whose postings pass through revenue
// (refundPostings).
func (t Tx) RefundedFromRevenue(ctx context.Context, paymentID string) (int64, error) {
	var n int64
	err := t.q.QueryRow(ctx, `SELECT coalesce(sum(amount), 0)::bigint FROM refunds
		WHERE payment_id = $1 AND coalesce(hold_source, 'revenue') = 'revenue' AND status IN ('pending', 'succeeded')`, paymentID).Scan(&n)
	return n, err
}

// TakeCredit takes amount off payment paymentID's amount_unapplied: a
// refund made at the gateway that straddled the account's credit and
// revenue is recorded on revenue, and drew that much of the credit.
func (t Tx) TakeCredit(ctx context.Context, paymentID string, amount int64) error {
	_, err := t.q.Exec(ctx, `UPDATE payments SET amount_unapplied = greatest(amount_unapplied - $2, 0) WHERE id = $1`, paymentID, amount)
	return err
}

// SetUnapplied records the part of an invoice payment its invoice did not
// need (it never shrinks: generate-invoice reports a payment once).
func (t Tx) SetUnapplied(ctx context.Context, paymentID string, amount int64) error {
	q := t.q
	_, err := q.Exec(ctx, `UPDATE payments SET amount_unapplied = greatest(amount_unapplied, $2) WHERE id = $1`, paymentID, amount)
	return err
}

// DeleteRefund removes a refund that never reached the gateway (its
// reservation was refused): a refused refund leaves nothing behind.
func (t Tx) DeleteRefund(ctx context.Context, id string) error {
	q := t.q
	_, err := q.Exec(ctx, `DELETE FROM refunds WHERE id = $1 AND gateway_refund_id IS NULL AND ledger_hold_id IS NULL`, id)
	return err
}

const methodCols = `id, account_id, user_id, gateway, token, brand, last4, exp_month, exp_year, is_default, created_at`

func scanMethod(row pgx.Row) (*payments.Method, error) {
	m := &payments.Method{}
	err := row.Scan(&m.ID, &m.AccountID, &m.UserID, &m.Gateway, &m.Token, &m.Brand, &m.Last4, &m.ExpMonth, &m.ExpYear,
		&m.Default, &m.CreatedAt)
	return m, err
}

func (t Tx) Method(ctx context.Context, accountID, id string) (*payments.Method, error) {
	q := t.q
	m, err := scanMethod(q.QueryRow(ctx, `SELECT `+methodCols+` FROM payment_methods WHERE id = $1 AND account_id = $2`, id, accountID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNoMethod
	}
	return m, err
}

func (t Tx) DefaultMethod(ctx context.Context, accountID string) (*payments.Method, error) {
	q := t.q
	m, err := scanMethod(q.QueryRow(ctx, `SELECT `+methodCols+` FROM payment_methods WHERE account_id = $1 AND is_default`, accountID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNoMethod
	}
	return m, err
}

// lockDefault serializes, per account, the transactions that change which
// method is its default until they commit: each clears the old default
// and sets a new one, and without it two at once each cleared the default
// the other could not see yet, and the second write hit the one-default
// index (a 500 for a valid request).
func (t Tx) lockDefault(ctx context.Context, accountID string) error {
	_, err := t.q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('billfn.payment_methods.default'), hashtext($1))`, accountID)
	return err
}

func (t Tx) InsertMethod(ctx context.Context, m *payments.Method) error {
	q := t.q
	if m.Default {
		if err := t.lockDefault(ctx, m.AccountID); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `UPDATE payment_methods SET is_default = false WHERE account_id = $1 AND is_default`, m.AccountID); err != nil {
			return err
		}
	}
	_, err := q.Exec(ctx, `INSERT INTO payment_methods (`+methodCols+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		m.ID, m.AccountID, m.UserID, m.Gateway, m.Token, m.Brand, m.Last4, m.ExpMonth, m.ExpYear, m.Default, m.CreatedAt)
	return err
}

func (t Tx) SetDefaultMethod(ctx context.Context, m *payments.Method) error {
	q := t.q
	if err := t.lockDefault(ctx, m.AccountID); err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `UPDATE payment_methods SET is_default = false WHERE account_id = $1 AND is_default AND id <> $2`,
		m.AccountID, m.ID); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `UPDATE payment_methods SET is_default = true WHERE id = $1`, m.ID)
	m.Default = true
	return err
}

func (t Tx) DeleteMethod(ctx context.Context, id string) error {
	q := t.q
	_, err := q.Exec(ctx, `DELETE FROM payment_methods WHERE id = $1`, id)
	return err
}

func (t Tx) Methods(ctx context.Context, accountID, userID string, after *payments.MethodKey, limit int) ([]*payments.Method, error) {
	q := t.q
	var w postgres.Where
	w.And("account_id = ?", accountID)
	if userID != "" {
		w.And("user_id = ?", userID)
	}
	if after != nil {
		w.And("(created_at, id) > (?, ?::uuid)", after.CreatedAt, after.ID)
	}
	rows, err := q.Query(ctx, `SELECT `+methodCols+` FROM payment_methods`+w.SQL()+
		` ORDER BY created_at, id LIMIT `+w.Arg(limit+1), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*payments.Method, error) { return scanMethod(r) })
}

// Unsettled returns ids of payments waiting on a gateway for longer than
// since: processing, or with a gateway operation whose answer never came.
func (t Tx) Unsettled(ctx context.Context, before time.Time, limit int) ([]string, error) {
	q := t.q
	rows, err := q.Query(ctx, `SELECT id FROM payments
		WHERE (status = 'processing' OR pending_op IS NOT NULL) AND updated_at < $1
		ORDER BY updated_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// PendingRefunds returns ids of refunds still pending after before.
func (t Tx) PendingRefunds(ctx context.Context, before time.Time, limit int) ([]string, error) {
	q := t.q
	rows, err := q.Query(ctx, `SELECT id FROM refunds WHERE status = 'pending' AND updated_at < $1
		ORDER BY updated_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ExpiredAuthorizations returns payments authorized before before and never captured.
func (t Tx) ExpiredAuthorizations(ctx context.Context, before time.Time, limit int) ([]string, error) {
	q := t.q
	rows, err := q.Query(ctx, `SELECT id FROM payments WHERE status = 'requires_capture' AND authorized_at < $1
		AND pending_op IS NULL ORDER BY authorized_at LIMIT $2`, before, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// asyncCommit makes the current transaction commit without waiting for its
// WAL to reach the disk. It is used only for writes whose loss in a
// Postgres crash nothing outside Postgres could notice: the sandbox's own
// books and the intents recorded before a sandbox call. Postgres writes one
// WAL stream, so the synchronous commit that ends the flow (and precedes
// every answer, event and webhook) makes all of them durable as well; a
// crash before it loses the intent and the sandbox's record together, and
// the client's retry (same Idempotency-Key) runs the flow again. Writes
// before a call to a real gateway are never asynchronous.
const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true)`

// PutInvoice stores f unless what is stored is as far along: a higher
// status rank wins; within a rank (and the same status) a higher
// amount_paid. It reports whether f was stored.
// invoiceUpsert is the read model's rule for a fact that arrives: a
// status never moves backwards, within a status amount_paid only grows, a
// draft replaces a draft. PutInvoice and PutInvoices share it.
const invoiceUpsert = `
	ON CONFLICT (id) DO UPDATE SET account_id = EXCLUDED.account_id, user_id = coalesce(EXCLUDED.user_id, i.user_id),
		currency = EXCLUDED.currency, total = EXCLUDED.total, amount_paid = greatest(i.amount_paid, EXCLUDED.amount_paid),
		amount_due = EXCLUDED.amount_due, status = EXCLUDED.status, status_rank = EXCLUDED.status_rank,
		source = EXCLUDED.source, updated_at = now()
	WHERE i.status_rank < EXCLUDED.status_rank
		OR (i.status_rank = EXCLUDED.status_rank AND i.status = EXCLUDED.status AND i.amount_paid < EXCLUDED.amount_paid)
		OR (i.status = 'draft' AND EXCLUDED.status = 'draft')`

func (t Tx) PutInvoice(ctx context.Context, f payments.InvoiceFacts, source string) (bool, error) {
	q := t.q
	var stored bool
	err := q.QueryRow(ctx, `INSERT INTO payment_invoices AS i (id, account_id, user_id, currency, total, amount_paid,
			amount_due, status, status_rank, source, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())`+invoiceUpsert+`
		RETURNING true`, f.ID, f.AccountID, payments.Nullable(f.UserID), f.Currency, f.Total, f.AmountPaid, f.AmountDue,
		f.Status, payments.InvoiceRank(f.Status), source).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return stored, err
}

// putInvoicesSQL is PutInvoice for many invoices, each at most once (ON
// CONFLICT cannot change a row twice in one statement).
const putInvoicesSQL = `INSERT INTO payment_invoices AS i (id, account_id, user_id, currency, total, amount_paid,
		amount_due, status, status_rank, source, updated_at)
	SELECT id, account_id, user_id, currency, total, amount_paid, amount_due, status, status_rank, $10, now()
	FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::int[])
		AS f(id, account_id, user_id, currency, total, amount_paid, amount_due, status, status_rank)` + invoiceUpsert

// PutInvoices stores many facts, in order, with the effect of PutInvoice
// called on each in turn. The facts are cut into rounds, the n-th fact of
// each invoice in round n, so an invoice's facts meet its row in their
// order; a round is one statement, and the rounds go as one pipelined
// round trip when the Tx is a transaction.
func (t Tx) PutInvoices(ctx context.Context, fs []payments.InvoiceFacts, source string) error {
	if len(fs) == 0 {
		return nil
	}
	type cols struct {
		ids, accts, currencies, statuses []string
		users                            []*string
		totals, paid, due                []int64
		ranks                            []int32
	}
	var byRound [][]payments.InvoiceFacts
	seen := make(map[string]int, len(fs))
	for _, f := range fs {
		n := seen[f.ID]
		seen[f.ID] = n + 1
		if n == len(byRound) {
			byRound = append(byRound, nil)
		}
		byRound[n] = append(byRound[n], f)
	}
	rounds := make([]*cols, len(byRound))
	for i, round := range byRound {
		// Rows locked in one order by every batch (an invoice is in a
		// round at most once, so the order changes no outcome).
		slices.SortFunc(round, func(a, b payments.InvoiceFacts) int { return strings.Compare(a.ID, b.ID) })
		r := &cols{}
		for _, f := range round {
			r.ids, r.accts, r.users = append(r.ids, f.ID), append(r.accts, f.AccountID), append(r.users, payments.Nullable(f.UserID))
			r.currencies, r.totals, r.paid, r.due = append(r.currencies, f.Currency), append(r.totals, f.Total),
				append(r.paid, f.AmountPaid), append(r.due, f.AmountDue)
			r.statuses, r.ranks = append(r.statuses, f.Status), append(r.ranks, int32(payments.InvoiceRank(f.Status)))
		}
		rounds[i] = r
	}
	args := func(r *cols) []any {
		return []any{r.ids, r.accts, r.users, r.currencies, r.totals, r.paid, r.due, r.statuses, r.ranks, source}
	}
	sender, ok := t.q.(interface {
		SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	})
	if !ok || len(rounds) == 1 {
		for _, r := range rounds {
			if _, err := t.q.Exec(ctx, putInvoicesSQL, args(r)...); err != nil {
				return err
			}
		}
		return nil
	}
	b := &pgx.Batch{}
	for _, r := range rounds {
		b.Queue(putInvoicesSQL, args(r)...)
	}
	br := sender.SendBatch(ctx, b)
	for range rounds {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return err
		}
	}
	return br.Close()
}

// LockInvoice reads and locks the facts of invoice id; ok is false when
// the read model does not know it.
func (t Tx) LockInvoice(ctx context.Context, id string) (f payments.InvoiceFacts, ok bool, err error) {
	tx := t.q
	var user *string
	err = tx.QueryRow(ctx, `SELECT id, account_id, user_id, currency, total, amount_paid, amount_due, status
		FROM payment_invoices WHERE id = $1 FOR UPDATE`, id).
		Scan(&f.ID, &f.AccountID, &user, &f.Currency, &f.Total, &f.AmountPaid, &f.AmountDue, &f.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return payments.InvoiceFacts{}, false, nil
	}
	f.InvoiceID, f.UserID = f.ID, payments.Str(user)
	return f, err == nil, err
}

func (t Tx) InvoiceLoad(ctx context.Context, invoiceID, except string) (payments.InvoiceLoad, error) {
	tx := t.q
	var l payments.InvoiceLoad
	err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount_captured), 0)::bigint,
			count(*) FILTER (WHERE status IN ('processing', 'requires_action', 'requires_capture') OR pending_op = 'confirm')
		FROM payments WHERE invoice_id = $1 AND id <> $2`, invoiceID, except).Scan(&l.Captured, &l.InFlight)
	return l, err
}

func (t Tx) CurrentAttempt(ctx context.Context, p *payments.Payment) (payments.Attempt, error) {
	q := t.q
	as, err := Tx{q: q}.Attempts(ctx, p.ID)
	if err != nil {
		return payments.Attempt{}, err
	}
	for _, a := range as {
		if a.N == p.Attempts {
			return a, nil
		}
	}
	return payments.Attempt{}, errors.New("payment " + p.ID + " has no attempt " + strconv.Itoa(p.Attempts))
}

// LockRefund locks a refund and its payment (payment first, as every
// other writer does).
func (t Tx) LockRefund(ctx context.Context, id string) (*payments.Payment, *payments.Refund, error) {
	tx := t.q
	var pid string
	if err := tx.QueryRow(ctx, `SELECT payment_id FROM refunds WHERE id = $1`, id).Scan(&pid); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, payments.ErrNoRefund
		}
		return nil, nil, err
	}
	p, err := Tx{q: tx}.Payment(ctx, pid, true)
	if err != nil {
		return nil, nil, err
	}
	r, err := Tx{q: tx}.Refund(ctx, id, true)
	return p, r, err
}

// SettleOpenAttempt finishes attempt a of paymentID if it is still open
// (a gateway's news never reopens a finished attempt).
func (t Tx) SettleOpenAttempt(ctx context.Context, paymentID string, a payments.Attempt) error {
	_, err := t.q.Exec(ctx, `UPDATE payment_attempts SET status = $3, gateway_payment_id = $4, failure_code = $5,
		decline_code = $6, failure_reason = $7, failure_message = $8, finished_at = $9
		WHERE payment_id = $1 AND n = $2 AND status IN ('pending', 'processing', 'requires_action', 'requires_capture')`,
		paymentID, a.N, a.Status, a.GatewayPaymentID, a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage, a.FinishedAt)
	return err
}

// PaymentExists reports whether payment id exists.
func (t Tx) PaymentExists(ctx context.Context, id string) (bool, error) {
	var exists bool
	err := t.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1)`, id).Scan(&exists)
	return exists, err
}

// Unsettled returns ids of payments waiting on a gateway for longer than
// before: processing, or with a gateway operation whose answer never came.
func (s *Store) Unsettled(ctx context.Context, before time.Time, limit int) ([]string, error) {
	return s.tx(s.pool).Unsettled(ctx, before, limit)
}

// PendingRefunds returns ids of refunds still pending after before.
func (s *Store) PendingRefunds(ctx context.Context, before time.Time, limit int) ([]string, error) {
	return s.tx(s.pool).PendingRefunds(ctx, before, limit)
}

// ExpiredAuthorizations returns payments authorized before before and never captured.
func (s *Store) ExpiredAuthorizations(ctx context.Context, before time.Time, limit int) ([]string, error) {
	return s.tx(s.pool).ExpiredAuthorizations(ctx, before, limit)
}
