// Package store holds all of generate-invoice's SQL: its own tables
// (migrations/00020_generate_invoice.sql) read and written as the domain
// types of package invoicing, the outbox and idempotent responses written
// in the same transactions, and the sweeps of the schedule tick.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/postgres"
)

// Querier is what pgx.Tx and *pgxpool.Pool have in common.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotFound is what a lookup of a coupon that does not exist returns.
var ErrNotFound = apperr.New(apperr.NotFound, "no such resource")

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always encode
	}
	return string(b)
}

// ---- invoices ----

const invoiceCols = `id, account_id, owner_user_id, subscription_id, period_start, period_end, billing_reason,
	number, number_prefix, status, currency, customer, memo, metadata, collection_method, net_terms_days, due_date,
	coupon_id, discounts, subtotal, discount, tax, tax_exclusive, total_excluding_tax, total, amount_paid,
	amount_refunded, amount_due, tax_breakdown, line_count, overdue, overdue_at, dunning_attempts, next_dunning_at,
	payment_failures, last_payment_error, last_payment_failed_at, created_at, updated_at, finalized_at, paid_at,
	voided_at, marked_uncollectible_at, drafted_by_customer`

func scanInvoice(row pgx.Row) (*invoicing.Invoice, error) {
	inv := &invoicing.Invoice{Object: "invoice"}
	var (
		due *time.Time
		cur string
	)
	err := row.Scan(&inv.ID, &inv.AccountID, &inv.UserID, &inv.SubscriptionID, &inv.PeriodStart, &inv.PeriodEnd,
		&inv.BillingReason, &inv.Number, &inv.NumberPrefix, &inv.Status, &cur, &inv.Customer, &inv.Memo,
		&inv.Metadata, &inv.CollectionMethod, &inv.NetTermsDays, &due, &inv.Coupon, &inv.Discounts, &inv.Subtotal,
		&inv.Discount, &inv.Tax, &inv.TaxExclusive, &inv.TotalExcludingTax, &inv.Total, &inv.AmountPaid,
		&inv.AmountRefunded, &inv.AmountDue, &inv.TaxBreakdown, &inv.LineCount, &inv.Overdue, &inv.OverdueAt,
		&inv.DunningAttempts, &inv.NextPaymentAttemptAt, &inv.PaymentFailures, &inv.LastPaymentError,
		&inv.LastPaymentFailedAt, &inv.CreatedAt, &inv.UpdatedAt, &inv.FinalizedAt, &inv.PaidAt, &inv.VoidedAt,
		&inv.MarkedUncollectibleAt, &inv.DraftedByCustomer)
	if err != nil {
		return nil, err
	}
	inv.Currency = money.Currency(cur)
	inv.TaxInclusive = inv.Tax - inv.TaxExclusive
	if due != nil {
		inv.DueDate = &invoicing.Date{Time: invoicing.UTCDate(*due)}
	}
	inv.PeriodStart, inv.PeriodEnd, inv.OverdueAt = utc(inv.PeriodStart), utc(inv.PeriodEnd), utc(inv.OverdueAt)
	inv.NextPaymentAttemptAt, inv.LastPaymentFailedAt = utc(inv.NextPaymentAttemptAt), utc(inv.LastPaymentFailedAt)
	inv.CreatedAt, inv.UpdatedAt = inv.CreatedAt.UTC(), inv.UpdatedAt.UTC()
	inv.FinalizedAt, inv.PaidAt, inv.VoidedAt = utc(inv.FinalizedAt), utc(inv.PaidAt), utc(inv.VoidedAt)
	inv.MarkedUncollectibleAt = utc(inv.MarkedUncollectibleAt)
	if inv.Metadata == nil {
		inv.Metadata = map[string]string{}
	}
	if inv.Discounts == nil {
		inv.Discounts = []invoicing.Discount{}
	}
	if inv.TaxBreakdown == nil {
		inv.TaxBreakdown = []invoicing.TaxAmount{}
	}
	return inv, nil
}

// GetInvoice loads an invoice with its lines; forUpdate locks the row.
func GetInvoice(ctx context.Context, q Querier, id string, forUpdate bool) (*invoicing.Invoice, error) {
	inv, err := getInvoiceRow(ctx, q, id, forUpdate)
	if err != nil {
		return nil, err
	}
	inv.Lines, err = getLines(ctx, q, id)
	return inv, err
}

// GetInvoiceHead loads an invoice without its lines (Lines nil): for
// what reads only the invoice's own columns (an email's subject).
func GetInvoiceHead(ctx context.Context, q Querier, id string) (*invoicing.Invoice, error) {
	return getInvoiceRow(ctx, q, id, false)
}

// GetInvoiceHeads is GetInvoiceHead for the invoices of ids that exist, in
// one statement.
func GetInvoiceHeads(ctx context.Context, q Querier, invoiceIDs []string) (map[string]*invoicing.Invoice, error) {
	out := make(map[string]*invoicing.Invoice, len(invoiceIDs))
	valid := validIDs(invoiceIDs)
	if len(valid) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT `+invoiceCols+` FROM invoices WHERE id = ANY($1::uuid[])`, valid)
	if err != nil {
		return nil, err
	}
	invs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*invoicing.Invoice, error) { return scanInvoice(r) })
	for _, inv := range invs {
		out[inv.ID] = inv
	}
	return out, err
}

// validIDs is the ids of list that are uuids: an id that is not names no
// invoice, and would make the ANY($1::uuid[]) cast fail the whole read.
func validIDs(list []string) []string {
	valid := make([]string, 0, len(list))
	for _, id := range list {
		if ids.Valid(id) {
			valid = append(valid, id)
		}
	}
	return valid
}

func getInvoiceRow(ctx context.Context, q Querier, id string, forUpdate bool) (*invoicing.Invoice, error) {
	if !ids.Valid(id) {
		return nil, invoicing.NotFound("invoice", id)
	}
	sql := `SELECT ` + invoiceCols + ` FROM invoices WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	inv, err := scanInvoice(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, invoicing.NotFound("invoice", id)
	}
	return inv, err
}

const lineCols = `id, description, quantity_e6, unit_amount, amount, discount_def, discount_amount, taxable_amount,
	tax_amount, total, taxes, proration, period_start, period_end, metadata`

const linesSQL = `SELECT ` + lineCols + ` FROM invoice_line_items WHERE invoice_id = $1 ORDER BY position`

func getLines(ctx context.Context, q Querier, invoiceID string) ([]invoicing.Line, error) {
	rows, err := q.Query(ctx, linesSQL, invoiceID)
	if err != nil {
		return nil, err
	}
	return scanLines(rows)
}

// ReadInvoice is GetInvoice outside a transaction: the invoice and its
// lines asked in one round trip, which Postgres runs as one implicit
// transaction (one commit where two separate reads made two). The sender
// reads every email's invoice so, and the API its cache misses.
func ReadInvoice(ctx context.Context, pool *pgxpool.Pool, id string) (*invoicing.Invoice, error) {
	if !ids.Valid(id) {
		return nil, invoicing.NotFound("invoice", id)
	}
	var b pgx.Batch
	b.Queue(`SELECT `+invoiceCols+` FROM invoices WHERE id = $1`, id)
	b.Queue(linesSQL, id)
	br := pool.SendBatch(ctx, &b)
	defer br.Close()
	inv, err := scanInvoice(br.QueryRow())
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, invoicing.NotFound("invoice", id)
	}
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	if inv.Lines, err = scanLines(rows); err != nil {
		return nil, err
	}
	return inv, br.Close()
}

// ReadInvoices reads the invoices of ids that exist, with their lines, in
// one round trip (one snapshot): the sender composes the emails of a claim
// from one read instead of one read, and one commit, per email.
func ReadInvoices(ctx context.Context, pool *pgxpool.Pool, invoiceIDs []string) (map[string]*invoicing.Invoice, error) {
	out := make(map[string]*invoicing.Invoice, len(invoiceIDs))
	valid := validIDs(invoiceIDs)
	if len(valid) == 0 {
		return out, nil
	}
	var b pgx.Batch
	b.Queue(`SELECT `+invoiceCols+` FROM invoices WHERE id = ANY($1::uuid[])`, valid)
	b.Queue(`SELECT invoice_id, `+lineCols+` FROM invoice_line_items WHERE invoice_id = ANY($1::uuid[]) ORDER BY invoice_id, position`, valid)
	br := pool.SendBatch(ctx, &b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	invs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*invoicing.Invoice, error) { return scanInvoice(r) })
	if err != nil {
		return nil, err
	}
	for _, inv := range invs {
		inv.Lines = []invoicing.Line{}
		out[inv.ID] = inv
	}
	if rows, err = br.Query(); err != nil {
		return nil, err
	}
	for rows.Next() {
		var invoiceID string
		l, err := scanLine(rows, &invoiceID)
		if err != nil {
			rows.Close()
			return nil, err
		}
		if inv := out[invoiceID]; inv != nil {
			inv.Lines = append(inv.Lines, l)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, br.Close()
}

// scanLine reads a line of lineCols, after the columns of before.
func scanLine(r pgx.Row, before ...any) (invoicing.Line, error) {
	var l invoicing.Line
	err := r.Scan(append(before, &l.ID, &l.Description, &l.Quantity, &l.UnitAmount, &l.Amount, &l.Discount, &l.DiscountAmount,
		&l.TaxableAmount, &l.TaxAmount, &l.Total, &l.Taxes, &l.Proration, &l.PeriodStart, &l.PeriodEnd, &l.Metadata)...)
	l.PeriodStart, l.PeriodEnd = utc(l.PeriodStart), utc(l.PeriodEnd)
	if l.Taxes == nil {
		l.Taxes = []invoicing.LineTax{}
	}
	if l.Metadata == nil {
		l.Metadata = map[string]string{}
	}
	return l, err
}

func scanLines(rows pgx.Rows) ([]invoicing.Line, error) {
	lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (invoicing.Line, error) { return scanLine(r) })
	if lines == nil {
		lines = []invoicing.Line{}
	}
	return lines, err
}

func dueArg(d *invoicing.Date) *time.Time {
	if d == nil {
		return nil
	}
	return &d.Time
}

// InsertInvoices inserts invoices and their lines with one statement each,
// whatever their number: the batch path's throughput rests on it.
func InsertInvoices(ctx context.Context, tx pgx.Tx, invs []*invoicing.Invoice) error {
	if len(invs) == 0 {
		return nil
	}
	n := len(invs)
	var (
		ids, accounts, owners, reasons, prefixes, statuses, currencies   = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		customers, memos, metas, methods, discounts, breakdowns          = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subs, coupons, numbers                                           = make([]*string, n), make([]*string, n), make([]*string, n)
		pstarts, pends, dues, finalized, paid                            = make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		nets                                                             = make([]*int32, n)
		subtotal, discount, tax, taxExcl, totalExcl, total, paidAmt, due = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		lineCounts                                                       = make([]int32, n)
		created                                                          = make([]time.Time, n)
		byCustomer                                                       = make([]bool, n)
	)
	lineTotal := 0
	for i, inv := range invs {
		ids[i], accounts[i], owners[i], reasons[i], prefixes[i] = inv.ID, inv.AccountID, inv.UserID, inv.BillingReason, inv.NumberPrefix
		statuses[i], currencies[i] = inv.Status, string(inv.Currency)
		customers[i], memos[i], metas[i], methods[i] = jsonText(inv.Customer), inv.Memo, jsonText(inv.Metadata), inv.CollectionMethod
		discounts[i], breakdowns[i] = jsonText(inv.Discounts), jsonText(inv.TaxBreakdown)
		subs[i], coupons[i], numbers[i] = inv.SubscriptionID, inv.Coupon, inv.Number
		pstarts[i], pends[i], dues[i], finalized[i], paid[i] = inv.PeriodStart, inv.PeriodEnd, dueArg(inv.DueDate), inv.FinalizedAt, inv.PaidAt
		if inv.NetTermsDays != nil {
			nets[i] = ptr(int32(*inv.NetTermsDays))
		}
		subtotal[i], discount[i], tax[i], taxExcl[i], totalExcl[i], total[i] = inv.Subtotal, inv.Discount, inv.Tax, inv.TaxExclusive, inv.TotalExcludingTax, inv.Total
		paidAmt[i], due[i], lineCounts[i], created[i] = inv.AmountPaid, inv.AmountDue, int32(len(inv.Lines)), inv.CreatedAt
		byCustomer[i] = inv.DraftedByCustomer
		lineTotal += len(inv.Lines)
	}
	_, err := tx.Exec(ctx, `INSERT INTO invoices (id, account_id, owner_user_id, billing_reason, number_prefix, status,
			currency, customer, memo, metadata, collection_method, discounts, tax_breakdown, subscription_id, coupon_id,
			number, period_start, period_end, due_date, finalized_at, paid_at, net_terms_days, subtotal, discount, tax,
			tax_exclusive, total_excluding_tax, total, amount_paid, amount_due, line_count, created_at, updated_at,
			drafted_by_customer)
		SELECT id, account, owner, reason, prefix, status, cur, cust::jsonb, memo, meta::jsonb, method, disc::jsonb,
			bd::jsonb, sub, coupon, num, ps, pe, due, fin, paid, net, st, dc, tx, tex, tet, tot, pa, ad, lc, cr, cr, bc
		FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::uuid[], $15::text[], $16::text[],
			$17::timestamptz[], $18::timestamptz[], $19::date[], $20::timestamptz[], $21::timestamptz[], $22::int[],
			$23::bigint[], $24::bigint[], $25::bigint[], $26::bigint[], $27::bigint[], $28::bigint[], $29::bigint[],
			$30::bigint[], $31::int[], $32::timestamptz[], $33::bool[])
			AS x(id, account, owner, reason, prefix, status, cur, cust, memo, meta, method, disc, bd, sub, coupon, num,
				ps, pe, due, fin, paid, net, st, dc, tx, tex, tet, tot, pa, ad, lc, cr, bc)`,
		ids, accounts, owners, reasons, prefixes, statuses, currencies, customers, memos, metas, methods, discounts,
		breakdowns, subs, coupons, numbers, pstarts, pends, dues, finalized, paid, nets, subtotal, discount, tax,
		taxExcl, totalExcl, total, paidAmt, due, lineCounts, created, byCustomer)
	if err != nil {
		if c, ok := uniqueViolation(err); ok && c == "invoices_subscription_period_key" {
			return ErrPeriodBilled
		}
		return err
	}
	if lineTotal == 0 {
		return nil
	}
	lines := make([]lineRow, 0, lineTotal)
	for _, inv := range invs {
		for i := range inv.Lines {
			lines = append(lines, lineRow{inv.ID, i, &inv.Lines[i]})
		}
	}
	return insertLines(ctx, tx, lines)
}

var ErrPeriodBilled = errors.New("subscription period already invoiced")

func uniqueViolation(err error) (string, bool) {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		return pg.ConstraintName, true
	}
	return "", false
}

type lineRow struct {
	invoiceID string
	position  int
	l         *invoicing.Line
}

// lineColumns are the columns insertLines copies.
var lineColumns = []string{"id", "invoice_id", "position", "description", "quantity_e6", "unit_amount", "amount",
	"discount_def", "discount_amount", "taxable_amount", "tax_amount", "total", "taxes", "proration",
	"period_start", "period_end", "metadata"}

// copyThreshold is the line count from which insertLines uses COPY: it
// costs the server about half of INSERT ... unnest per row, but one more
// round trip, which a single invoice does not win back.
const copyThreshold = 50

// insertLines writes lines: with COPY for the batch path (ten lines per
// invoice), with one INSERT otherwise.
func insertLines(ctx context.Context, tx pgx.Tx, rows []lineRow) error {
	src := make([][]any, len(rows))
	for i, r := range rows {
		l := r.l
		var disc *string
		if l.Discount != nil {
			disc = ptr(jsonText(l.Discount))
		}
		meta := "{}"
		if len(l.Metadata) > 0 {
			meta = jsonText(l.Metadata)
		}
		src[i] = []any{l.ID, r.invoiceID, int32(r.position), l.Description, int64(l.Quantity), l.UnitAmount, l.Amount,
			disc, l.DiscountAmount, l.TaxableAmount, l.TaxAmount, l.Total, jsonText(l.Taxes), l.Proration,
			l.PeriodStart, l.PeriodEnd, meta}
	}
	if len(rows) >= copyThreshold {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"invoice_line_items"}, lineColumns, pgx.CopyFromRows(src))
		return err
	}
	// Column-wise arrays for unnest, in lineColumns order.
	cols := make([]any, len(lineColumns))
	for c := range lineColumns {
		switch src[0][c].(type) {
		case string:
			cols[c] = column[string](src, c)
		case *string:
			cols[c] = column[*string](src, c)
		case int32:
			cols[c] = column[int32](src, c)
		case int64:
			cols[c] = column[int64](src, c)
		case bool:
			cols[c] = column[bool](src, c)
		case *time.Time:
			cols[c] = column[*time.Time](src, c)
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO invoice_line_items (id, invoice_id, position, description, quantity_e6,
			unit_amount, amount, discount_def, discount_amount, taxable_amount, tax_amount, total, taxes, proration,
			period_start, period_end, metadata)
		SELECT id, inv, pos, descr, qty, unit, amt, disc::jsonb, da, ta, tx, tot, taxes::jsonb, pr, ps, pe, meta::jsonb
		FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
			$8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::bool[],
			$15::timestamptz[], $16::timestamptz[], $17::text[])
			AS x(id, inv, pos, descr, qty, unit, amt, disc, da, ta, tx, tot, taxes, pr, ps, pe, meta)`, cols...)
	return err
}

func column[T any](rows [][]any, c int) []T {
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = r[c].(T)
	}
	return out
}

// ReplaceLines rewrites a draft's lines after an edit (line ids are kept).
func ReplaceLines(ctx context.Context, tx pgx.Tx, inv *invoicing.Invoice) error {
	if _, err := tx.Exec(ctx, `DELETE FROM invoice_line_items WHERE invoice_id = $1`, inv.ID); err != nil {
		return err
	}
	if len(inv.Lines) == 0 {
		return nil
	}
	rows := make([]lineRow, len(inv.Lines))
	for i := range inv.Lines {
		rows[i] = lineRow{inv.ID, i, &inv.Lines[i]}
	}
	return insertLines(ctx, tx, rows)
}

// updateInvoice writes every mutable column of inv.
func SaveInvoice(ctx context.Context, tx pgx.Tx, inv *invoicing.Invoice) error {
	var net *int32
	if inv.NetTermsDays != nil {
		net = ptr(int32(*inv.NetTermsDays))
	}
	_, err := tx.Exec(ctx, `UPDATE invoices SET number = $2, number_prefix = $3, status = $4, customer = $5,
			memo = $6, metadata = $7, collection_method = $8, net_terms_days = $9, due_date = $10, coupon_id = $11,
			discounts = $12, subtotal = $13, discount = $14, tax = $15, tax_exclusive = $16, total_excluding_tax = $17,
			total = $18, amount_paid = $19, amount_refunded = $20, amount_due = $21, tax_breakdown = $22,
			line_count = $23, overdue = $24, overdue_at = $25, dunning_attempts = $26, next_dunning_at = $27,
			payment_failures = $28, last_payment_error = $29, last_payment_failed_at = $30, updated_at = $31,
			finalized_at = $32, paid_at = $33, voided_at = $34, marked_uncollectible_at = $35
		WHERE id = $1`,
		inv.ID, inv.Number, inv.NumberPrefix, inv.Status, jsonText(inv.Customer), inv.Memo, jsonText(inv.Metadata),
		inv.CollectionMethod, net, dueArg(inv.DueDate), inv.Coupon, jsonText(inv.Discounts), inv.Subtotal,
		inv.Discount, inv.Tax, inv.TaxExclusive, inv.TotalExcludingTax, inv.Total, inv.AmountPaid,
		inv.AmountRefunded, inv.AmountDue, jsonText(inv.TaxBreakdown), inv.LineCount, inv.Overdue, inv.OverdueAt,
		inv.DunningAttempts, inv.NextPaymentAttemptAt, inv.PaymentFailures, inv.LastPaymentError,
		inv.LastPaymentFailedAt, inv.UpdatedAt, inv.FinalizedAt, inv.PaidAt, inv.VoidedAt, inv.MarkedUncollectibleAt)
	return err
}

// InvoiceFilter is a list query.
type InvoiceFilter = billing.InvoiceFilter

// ListInvoices returns a page newest first (UUIDv7 ids are time-ordered),
// without lines, by keyset on id.
func ListInvoices(ctx context.Context, q Querier, f InvoiceFilter) ([]*invoicing.Invoice, error) {
	var w postgres.Where
	if f.Owner != "" {
		w.And("owner_user_id = ?", f.Owner)
	}
	if f.AccountID != "" {
		w.And("account_id = ?", f.AccountID)
	}
	if f.SubscriptionID != "" {
		w.And("subscription_id = ?", f.SubscriptionID)
	}
	if f.Status != "" {
		w.And("status = ?", f.Status)
	}
	if f.DueBefore != nil {
		w.And("due_date < ?", *f.DueBefore)
	}
	if f.After != "" {
		w.And("id < ?", f.After)
	}
	rows, err := q.Query(ctx, `SELECT `+invoiceCols+` FROM invoices`+w.SQL()+` ORDER BY id DESC LIMIT `+w.Arg(f.Limit), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*invoicing.Invoice, error) { return scanInvoice(r) })
}

// ReserveNumbers takes n consecutive numbers of a series inside the
// finalizing transaction and returns the first. The row stays locked until
// the transaction ends, so concurrent finalizations queue and a rollback
// returns the numbers: no duplicate, no gap.
func (tx *Tx) ReserveNumbers(ctx context.Context, series string, n int) (int64, error) {
	var last int64
	err := tx.QueryRow(ctx, `INSERT INTO invoice_number_sequences AS s (prefix, last_value) VALUES ($1, $2)
		ON CONFLICT (prefix) DO UPDATE SET last_value = s.last_value + EXCLUDED.last_value
		RETURNING last_value`, series, n).Scan(&last)
	return last - int64(n) + 1, err
}

// ---- tax rates ----

const taxRateCols = `id, display_name, jurisdiction, country, state, description, percentage_e4, inclusive, compound, metadata, created_at`

func scanTaxRate(row pgx.Row) (invoicing.TaxRate, error) {
	r := invoicing.TaxRate{Object: "tax_rate"}
	err := row.Scan(&r.ID, &r.DisplayName, &r.Jurisdiction, &r.Country, &r.State, &r.Description, &r.Percentage,
		&r.Inclusive, &r.Compound, &r.Metadata, &r.CreatedAt)
	r.CreatedAt = r.CreatedAt.UTC()
	if r.Metadata == nil {
		r.Metadata = map[string]string{}
	}
	return r, err
}

func InsertTaxRate(ctx context.Context, tx pgx.Tx, r invoicing.TaxRate) error {
	_, err := tx.Exec(ctx, `INSERT INTO tax_rates (`+taxRateCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		r.ID, r.DisplayName, r.Jurisdiction, r.Country, r.State, r.Description, int64(r.Percentage), r.Inclusive,
		r.Compound, jsonText(r.Metadata), r.CreatedAt)
	return err
}

func GetTaxRates(ctx context.Context, q Querier, ids []string) ([]invoicing.TaxRate, error) {
	rows, err := q.Query(ctx, `SELECT `+taxRateCols+` FROM tax_rates WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (invoicing.TaxRate, error) { return scanTaxRate(r) })
}

func ListTaxRates(ctx context.Context, q Querier, after string, limit int) ([]invoicing.TaxRate, error) {
	var rows pgx.Rows
	var err error
	if after == "" {
		rows, err = q.Query(ctx, `SELECT `+taxRateCols+` FROM tax_rates ORDER BY id DESC LIMIT $1`, limit)
	} else {
		rows, err = q.Query(ctx, `SELECT `+taxRateCols+` FROM tax_rates WHERE id < $1 ORDER BY id DESC LIMIT $2`, after, limit)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (invoicing.TaxRate, error) { return scanTaxRate(r) })
}

// ---- coupons ----

const couponCols = `id, name, percent_off_e4, amount_off, currency, duration, duration_in_months, max_redemptions,
	times_redeemed, redeem_by, metadata, created_at`

func scanCoupon(row pgx.Row) (invoicing.Coupon, error) {
	c := invoicing.Coupon{Object: "coupon"}
	var pct *int64
	var cur *string
	err := row.Scan(&c.ID, &c.Name, &pct, &c.AmountOff, &cur, &c.Duration, &c.DurationInMonths, &c.MaxRedemptions,
		&c.TimesRedeemed, &c.RedeemBy, &c.Metadata, &c.CreatedAt)
	if pct != nil {
		c.PercentOff = ptr(invoicing.Percent(*pct))
	}
	if cur != nil {
		c.Currency = ptr(money.Currency(*cur))
	}
	c.RedeemBy, c.CreatedAt = utc(c.RedeemBy), c.CreatedAt.UTC()
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	return c, err
}

func InsertCoupon(ctx context.Context, tx pgx.Tx, c invoicing.Coupon) error {
	var pct *int64
	if c.PercentOff != nil {
		pct = ptr(int64(*c.PercentOff))
	}
	var cur *string
	if c.Currency != nil {
		cur = ptr(string(*c.Currency))
	}
	_, err := tx.Exec(ctx, `INSERT INTO coupons (`+couponCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11)`,
		c.ID, c.Name, pct, c.AmountOff, cur, c.Duration, c.DurationInMonths, c.MaxRedemptions, c.RedeemBy,
		jsonText(c.Metadata), c.CreatedAt)
	if name, ok := uniqueViolation(err); ok && name == "coupons_pkey" {
		return apperr.New(invoicing.CodeCouponExists, "coupon %s already exists", c.ID)
	}
	return err
}

func GetCoupon(ctx context.Context, q Querier, id string, forUpdate bool) (invoicing.Coupon, error) {
	sql := `SELECT ` + couponCols + ` FROM coupons WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	c, err := scanCoupon(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	return c, err
}

func ListCoupons(ctx context.Context, q Querier, after string, limit int) ([]invoicing.Coupon, error) {
	rows, err := q.Query(ctx, `SELECT `+couponCols+` FROM coupons WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (invoicing.Coupon, error) { return scanCoupon(r) })
}

// ---- subscriptions ----

const subCols = `id, account_id, owner_user_id, status, plan_name, plan_amount, currency, interval, interval_count,
	start_at, trial_end, billing_start, cycle_anchor, anchor_day, periods_billed, next_billing_at,
	current_period_start, current_period_end, tax_rate_ids, coupon_id, coupon_start, coupon_uses, collection_method,
	net_terms_days, customer, metadata, pending_lines, cancel_at, canceled_at, latest_invoice_id, created_at, updated_at`

func scanSub(row pgx.Row) (*invoicing.Subscription, error) {
	s := &invoicing.Subscription{}
	var cur string
	err := row.Scan(&s.ID, &s.AccountID, &s.UserID, &s.Status, &s.Plan.Name, &s.Plan.Amount, &cur, &s.Plan.Interval,
		&s.Plan.IntervalCount, &s.Start, &s.TrialEnd, &s.BillingStart, &s.CycleAnchor, &s.AnchorDay,
		&s.PeriodsBilled, &s.NextBillingAt, &s.CurrentPeriodStart, &s.CurrentPeriodEnd, &s.TaxRateIDs, &s.Coupon,
		&s.CouponStart, &s.CouponUses, &s.CollectionMethod, &s.NetTermsDays, &s.Customer, &s.Metadata,
		&s.PendingLines, &s.CancelAt, &s.CanceledAt, &s.LatestInvoiceID, &s.CreatedAt, &s.UpdatedAt)
	if err != nil {
		return nil, err
	}
	s.Plan.Currency = money.Currency(cur)
	s.Start, s.BillingStart, s.CycleAnchor = s.Start.UTC(), s.BillingStart.UTC(), s.CycleAnchor.UTC()
	s.TrialEnd, s.NextBillingAt, s.CouponStart = utc(s.TrialEnd), utc(s.NextBillingAt), utc(s.CouponStart)
	s.CurrentPeriodStart, s.CurrentPeriodEnd = utc(s.CurrentPeriodStart), utc(s.CurrentPeriodEnd)
	s.CancelAt, s.CanceledAt = utc(s.CancelAt), utc(s.CanceledAt)
	s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
	s.Derive()
	return s, nil
}

func GetSub(ctx context.Context, q Querier, id string, forUpdate bool) (*invoicing.Subscription, error) {
	if !ids.Valid(id) {
		return nil, invoicing.NotFound("subscription", id)
	}
	sql := `SELECT ` + subCols + ` FROM subscriptions WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	s, err := scanSub(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, invoicing.NotFound("subscription", id)
	}
	return s, err
}

func InsertSub(ctx context.Context, tx pgx.Tx, s *invoicing.Subscription) error {
	_, err := tx.Exec(ctx, `INSERT INTO subscriptions (`+subCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
			$10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30,
			$31, $32)`,
		s.ID, s.AccountID, s.UserID, s.Status, s.Plan.Name, s.Plan.Amount, string(s.Plan.Currency), s.Plan.Interval,
		s.Plan.IntervalCount, s.Start, s.TrialEnd, s.BillingStart, s.CycleAnchor, s.AnchorDay, s.PeriodsBilled,
		s.NextBillingAt, s.CurrentPeriodStart, s.CurrentPeriodEnd, s.TaxRateIDs, s.Coupon, s.CouponStart,
		s.CouponUses, s.CollectionMethod, s.NetTermsDays, jsonText(s.Customer), jsonText(s.Metadata),
		jsonText(s.PendingLines), s.CancelAt, s.CanceledAt, s.LatestInvoiceID, s.CreatedAt, s.UpdatedAt)
	return err
}

func SaveSub(ctx context.Context, tx pgx.Tx, s *invoicing.Subscription) error {
	_, err := tx.Exec(ctx, `UPDATE subscriptions SET status = $2, plan_name = $3, plan_amount = $4, interval = $5,
			interval_count = $6, billing_start = $7, cycle_anchor = $8, anchor_day = $9, periods_billed = $10,
			next_billing_at = $11, current_period_start = $12, current_period_end = $13, tax_rate_ids = $14,
			coupon_id = $15, coupon_start = $16, coupon_uses = $17, collection_method = $18, net_terms_days = $19,
			customer = $20, metadata = $21, pending_lines = $22, cancel_at = $23, canceled_at = $24,
			latest_invoice_id = $25, updated_at = $26
		WHERE id = $1`,
		s.ID, s.Status, s.Plan.Name, s.Plan.Amount, s.Plan.Interval, s.Plan.IntervalCount, s.BillingStart,
		s.CycleAnchor, s.AnchorDay, s.PeriodsBilled, s.NextBillingAt, s.CurrentPeriodStart, s.CurrentPeriodEnd,
		s.TaxRateIDs, s.Coupon, s.CouponStart, s.CouponUses, s.CollectionMethod, s.NetTermsDays,
		jsonText(s.Customer), jsonText(s.Metadata), jsonText(s.PendingLines), s.CancelAt, s.CanceledAt,
		s.LatestInvoiceID, s.UpdatedAt)
	return err
}

type SubFilter = billing.SubFilter

func ListSubs(ctx context.Context, q Querier, f SubFilter) ([]*invoicing.Subscription, error) {
	var w postgres.Where
	if f.Owner != "" {
		w.And("owner_user_id = ?", f.Owner)
	}
	if f.AccountID != "" {
		w.And("account_id = ?", f.AccountID)
	}
	if f.Status != "" {
		w.And("status = ?", f.Status)
	}
	if f.After != "" {
		w.And("id < ?", f.After)
	}
	rows, err := q.Query(ctx, `SELECT `+subCols+` FROM subscriptions`+w.SQL()+` ORDER BY id DESC LIMIT `+w.Arg(f.Limit), w.Args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*invoicing.Subscription, error) { return scanSub(r) })
}

// ---- invoice requests (asynchronous creation) ----

// InvoiceRequest is the state of an asynchronous invoice creation.
type InvoiceRequest = billing.InvoiceRequest

func GetRequest(ctx context.Context, q Querier, id string) (*InvoiceRequest, error) {
	r := &InvoiceRequest{Object: "invoice_request"}
	var prob []byte
	err := q.QueryRow(ctx, `SELECT id, status, account_id, owner_user_id, invoice_id, problem, created_at, completed_at
		FROM invoice_requests WHERE id = $1 ORDER BY created_at LIMIT 1`, id).
		Scan(&r.ID, &r.Status, &r.AccountID, &r.UserID, &r.InvoiceID, &prob, &r.CreatedAt, &r.CompletedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, invoicing.NotFound("invoice request", id)
	}
	r.Problem = prob
	r.CreatedAt, r.CompletedAt = r.CreatedAt.UTC(), utc(r.CompletedAt)
	return r, err
}

// RequestOutcome is how one invoice.requested event ended.
type RequestOutcome = billing.RequestOutcome

// CompleteRequests records outcomes, creating the rows of requests that
// did not come through POST /invoices (any producer may send the event).
func CompleteRequests(ctx context.Context, tx pgx.Tx, outs []RequestOutcome, now time.Time) error {
	if len(outs) == 0 {
		return nil
	}
	n := len(outs)
	sources, reqIDs, statuses := make([]string, n), make([]string, n), make([]string, n)
	owners, accounts, invoices, problems := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	for i, o := range outs {
		sources[i], reqIDs[i] = o.Source, o.ID
		if ids.Valid(o.Owner) {
			owners[i] = ptr(o.Owner)
		}
		if ids.Valid(o.Account) {
			accounts[i] = ptr(o.Account)
		}
		if o.Problem == nil {
			statuses[i], invoices[i] = "succeeded", ptr(o.InvoiceID)
		} else {
			statuses[i], problems[i] = "failed", ptr(string(o.Problem))
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO invoice_requests AS r (source, id, owner_user_id, account_id, status,
			invoice_id, problem, created_at, completed_at)
		SELECT s, i, o, a, st, inv, p::jsonb, $8, $8
		FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::text[])
			AS x(s, i, o, a, st, inv, p)
		ON CONFLICT (source, id) DO UPDATE SET status = EXCLUDED.status, invoice_id = EXCLUDED.invoice_id,
			problem = EXCLUDED.problem, completed_at = EXCLUDED.completed_at`,
		sources, reqIDs, owners, accounts, statuses, invoices, problems, now)
	return err
}

func InsertPendingRequests(ctx context.Context, tx pgx.Tx, source string, ids []string, owner, account []string, byCustomer bool, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO invoice_requests (source, id, owner_user_id, account_id, status, created_at, by_customer)
		SELECT $1, i, o, a, 'pending', $5, $6 FROM unnest($2::text[], $3::uuid[], $4::uuid[]) AS x(i, o, a)`,
		source, ids, owner, account, now, byCustomer)
	return err
}

// CustomerRequests is the set of those of the requests ids of source a
// customer made (InsertPendingRequests' byCustomer).
func CustomerRequests(ctx context.Context, q Querier, source string, ids []string) (map[string]bool, error) {
	return stringSet(q.Query(ctx, `SELECT id FROM invoice_requests WHERE source = $1 AND id = ANY($2::text[]) AND by_customer`, source, ids))
}

// stringSet is the set of the strings a query's rows hold in one column.
func stringSet(rows pgx.Rows, err error) (map[string]bool, error) {
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(got))
	for _, s := range got {
		set[s] = true
	}
	return set, nil
}

// pipeline is a transaction whose Exec calls are queued and sent together
// in one round trip by flush: the writes at the end of a request (the
// invoice, its lines, outbox rows, the idempotency response) cost one
// round trip instead of four, and the invoice-number row lock taken before
// them is held that much shorter. A queued statement's error surfaces at
// the next flush; Exec's result is empty.
type pipeline struct {
	pgx.Tx
	batch pgx.Batch
}

// Exec queues the statement.
func (p *pipeline) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	p.batch.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Query, QueryRow and CopyFrom first send what is queued, so every
// statement runs in the order it was issued.
func (p *pipeline) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return p.Tx.Query(ctx, sql, args...)
}

func (p *pipeline) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := p.flush(ctx); err != nil {
		return errRow{err}
	}
	return p.Tx.QueryRow(ctx, sql, args...)
}

func (p *pipeline) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := p.flush(ctx); err != nil {
		return 0, err
	}
	return p.Tx.CopyFrom(ctx, table, cols, src)
}

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

// flush sends the queued statements.
func (p *pipeline) flush(ctx context.Context) error {
	if p.batch.Len() == 0 {
		return nil
	}
	err := p.Tx.SendBatch(ctx, &p.batch).Close()
	p.batch = pgx.Batch{}
	return err
}

// pipelined runs fn on a pipeline over tx and flushes it.
func pipelined(ctx context.Context, tx pgx.Tx, fn func(tx pgx.Tx) error) error {
	p := &pipeline{Tx: tx}
	if err := fn(p); err != nil {
		return err
	}
	return p.flush(ctx)
}
