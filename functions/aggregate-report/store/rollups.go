package store

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/postgres"
)

// LockKey is the advisory lock every writer of the rollups holds for its
// transaction ("aggrepor"). A batch that reads or writes state holds it
// exclusively, so state changes happen one batch at a time and log order
// is their application order. A batch of commutative events only
// (transfers, holds: additive rollups, no state) holds it shared and runs
// beside other such batches: the order in which additions land does not
// change a sum. Rebuilds and snapshot writes hold it exclusively.
const LockKey int64 = 0x6167677265706f72

// Lock takes the writers' advisory lock exclusively for the rest of tx.
func Lock(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, LockKey)
	return err
}

// Result says what Ingest did.
type Result struct {
	Applied    int // events appended to the log and aggregated
	Duplicates int // already in the log
	Ignored    int // types the function does not aggregate
	Days       []time.Time
	// Dup says, for each event given, whether the log held it already
	// (or held it earlier in the same call): the receiver's dedupe.
	Dup []bool
}

// Ingest appends evs to the event log and aggregates them, inside tx (the
// delivery's transaction). The log is the dedupe: an event is appended once
// by its (source, id), and only an appended event is aggregated, so an
// event is never counted twice, however often it is delivered.
func Ingest(ctx context.Context, tx pgx.Tx, evs []rollup.Event) (Result, error) {
	res := Result{Dup: make([]bool, len(evs))}
	todo := make([]rollup.Event, 0, len(evs))
	for _, ev := range evs {
		if rollup.Consumes(ev.Type) {
			todo = append(todo, ev)
		} else {
			res.Ignored++
		}
	}
	if len(todo) == 0 {
		return res, nil
	}
	// One round trip reads everything the batch needs: the writers' lock,
	// then the log append that says which events are new, then the state
	// rows the events name (read under the lock; those of duplicates too,
	// which costs a few rows and no round trip).
	b := &pgx.Batch{}
	lock := `SELECT pg_advisory_xact_lock($1)`
	if rollup.Commutative(todo) {
		lock = `SELECT pg_advisory_xact_lock_shared($1)`
	}
	b.Queue(lock, LockKey)
	var fresh []rollup.Event
	queueAppend(tx.Conn(), b, todo, &fresh)
	st := rollup.NewState()
	queueLoadState(b, st, rollup.Needs(todo))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return res, err
	}
	res.Duplicates = len(todo) - len(fresh)
	if res.Duplicates > 0 {
		res.markDuplicates(evs, fresh)
	}
	if len(fresh) == 0 {
		return res, nil
	}
	eff := rollup.NewEffects()
	agg := rollup.Aggregator{State: st, Effects: eff}
	for _, ev := range fresh {
		if err := agg.Apply(ev); err != nil {
			return res, err
		}
	}
	if err := Write(ctx, tx, eff, st, false); err != nil {
		return res, err
	}
	res.Applied = len(fresh)
	for _, d := range slices.Sorted(maps.Keys(eff.Days)) {
		res.Days = append(res.Days, time.Unix(d, 0).UTC())
	}
	return res, nil
}

// markDuplicates sets Dup for the consumed events of evs that are not in
// fresh, the first occurrence of each fresh event being the one appended.
func (res *Result) markDuplicates(evs, fresh []rollup.Event) {
	type key struct{ s, i string }
	appended := make(map[key]bool, len(fresh))
	for _, ev := range fresh {
		appended[key{ev.Source, ev.ID}] = true
	}
	for i, ev := range evs {
		if !rollup.Consumes(ev.Type) {
			continue
		}
		k := key{ev.Source, ev.ID}
		if appended[k] {
			delete(appended, k)
		} else {
			res.Dup[i] = true
		}
	}
}

// queueAppend queues the insert of evs into the log, in order; when it
// has run, fresh holds those that were new. c is the connection that
// sends b, whose write buffer gets room for the events (ReserveFor).
func queueAppend(c *pgx.Conn, b *pgx.Batch, evs []rollup.Event, fresh *[]rollup.Event) {
	n := len(evs)
	src, ids, typ, sub := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	times := make([]time.Time, n)
	data := make([][]byte, n) // text[] from the events' bytes, not a copy of each as a string
	for i, ev := range evs {
		// Postgres checks the data as it stores it as jsonb; data that is
		// not JSON fails the batch permanently and the receiver then parks
		// that event alone.
		src[i], ids[i], typ[i], sub[i], times[i] = ev.Source, ev.ID, ev.Type, ev.Subject, ev.Time
		data[i] = ev.Data
		if data[i] == nil {
			data[i] = []byte{} // '' (not JSON, refused as before), never NULL
		}
	}
	args := postgres.Presized(src, ids, typ, times, sub, data)
	postgres.ReserveFor(c, args)
	b.Queue(`INSERT INTO report_events (source, id, type, time, subject, data)
		SELECT s, i, t, tm, sb, d::jsonb
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
		     WITH ORDINALITY AS x(s, i, t, tm, sb, d, ord)
		ORDER BY ord
		ON CONFLICT (source, id) DO NOTHING
		RETURNING seq, source, id`, args...).Query(func(rows pgx.Rows) error {
		type key struct{ s, i string }
		seqs := map[key]int64{}
		for rows.Next() {
			var k key
			var seq int64
			if err := rows.Scan(&seq, &k.s, &k.i); err != nil {
				return err
			}
			seqs[k] = seq
		}
		if err := rows.Err(); err != nil {
			return classify(err)
		}
		*fresh = make([]rollup.Event, 0, len(seqs))
		for _, ev := range evs {
			k := key{ev.Source, ev.ID}
			if seq, ok := seqs[k]; ok {
				ev.Seq = seq
				*fresh = append(*fresh, ev)
				delete(seqs, k) // the same event twice in one batch counts once
			}
		}
		return nil
	})
}

// classify marks errors that retrying cannot fix as permanent: an amount
// that overflows a rollup, data Postgres cannot store as jsonb.
func classify(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "22003", "22P02", "22P05", "22021", "22030", "22032", "22023":
			return events.Permanent(err)
		}
	}
	return err
}

// queueLoadState queues the reads of the state rows named by k into s.
func queueLoadState(b *pgx.Batch, s *rollup.State, k rollup.Keys) {
	if len(k.Accounts) > 0 {
		b.Queue(`SELECT account_id::text, user_id::text, number, currency, status, updated_at
			FROM report_accounts WHERE account_id = ANY($1::uuid[])`, k.Accounts).Query(func(rows pgx.Rows) error {
			return scanAccounts(rows, s)
		})
	}
	if len(k.Subscriptions) > 0 {
		b.Queue(`SELECT subscription_id::text, account_id::text, currency, mrr, status, had_mrr, updated_at
			FROM report_subscriptions WHERE subscription_id = ANY($1::uuid[])`, k.Subscriptions).Query(func(rows pgx.Rows) error {
			return scanSubscriptions(rows, s)
		})
	}
	if len(k.Payments) > 0 {
		b.Queue(`SELECT payment_id::text, account_id::text, gateway, currency
			FROM report_payments WHERE payment_id = ANY($1::uuid[])`, k.Payments).Query(func(rows pgx.Rows) error {
			return scanPayments(rows, s)
		})
	}
	if len(k.Invoices) > 0 {
		b.Queue(`SELECT invoice_id::text, account_id::text, currency, total, amount_due, due_date, finalized_at, closed_at, status, updated_at
			FROM report_invoices WHERE invoice_id = ANY($1::uuid[])`, k.Invoices).Query(func(rows pgx.Rows) error {
			return scanInvoices(rows, s)
		})
	}
	if len(k.Refunds) > 0 {
		b.Queue(`SELECT `+refundCols+` FROM report_refunds WHERE refund_id = ANY($1::text[])`, k.Refunds).
			Query(func(rows pgx.Rows) error { return scanRefunds(rows, s) })
	}
	if len(k.DisputeObjects) > 0 {
		b.Queue(`SELECT d.gateway, d.object_id, d.payment_id, d.currency, d.amount, d.opened_at
			FROM report_disputes d JOIN unnest($1::text[], $2::text[]) AS k(g, o) ON d.gateway = k.g AND d.object_id = k.o`,
			k.DisputeGateways, k.DisputeObjects).Query(func(rows pgx.Rows) error {
			return scanDisputes(rows, s)
		})
	}
}

// LoadState reads every state row (a replay compares with it).
func LoadState(ctx context.Context, tx pgx.Tx) (*rollup.State, error) {
	s := rollup.NewState()
	b := &pgx.Batch{}
	b.Queue(`SELECT account_id::text, user_id::text, number, currency, status, updated_at FROM report_accounts`).
		Query(func(rows pgx.Rows) error { return scanAccounts(rows, s) })
	b.Queue(`SELECT subscription_id::text, account_id::text, currency, mrr, status, had_mrr, updated_at FROM report_subscriptions`).
		Query(func(rows pgx.Rows) error { return scanSubscriptions(rows, s) })
	b.Queue(`SELECT payment_id::text, account_id::text, gateway, currency FROM report_payments`).
		Query(func(rows pgx.Rows) error { return scanPayments(rows, s) })
	b.Queue(`SELECT invoice_id::text, account_id::text, currency, total, amount_due, due_date, finalized_at, closed_at, status, updated_at
		FROM report_invoices`).Query(func(rows pgx.Rows) error { return scanInvoices(rows, s) })
	b.Queue(`SELECT gateway, object_id, payment_id, currency, amount, opened_at FROM report_disputes`).
		Query(func(rows pgx.Rows) error { return scanDisputes(rows, s) })
	b.Queue(`SELECT ` + refundCols + ` FROM report_refunds`).Query(func(rows pgx.Rows) error { return scanRefunds(rows, s) })
	return s, tx.SendBatch(ctx, b).Close()
}

const refundCols = `refund_id, payment_id, succeeded_at, failed_at, failed_source, failed_event`

func scanRefunds(rows pgx.Rows, s *rollup.State) error {
	for rows.Next() {
		var id string
		var r rollup.Refund
		var ok, failed *time.Time
		if err := rows.Scan(&id, &r.PaymentID, &ok, &failed, &r.FailedSource, &r.FailedID); err != nil {
			return err
		}
		if ok != nil {
			r.SucceededAt = rollup.Micro(*ok)
		}
		if failed != nil {
			r.FailedAt = rollup.Micro(*failed)
		}
		s.Refunds[id] = &r
	}
	return rows.Err()
}

func scanAccounts(rows pgx.Rows, s *rollup.State) error {
	for rows.Next() {
		var id string
		var a rollup.Account
		if err := rows.Scan(&id, &a.UserID, &a.Number, &a.Currency, &a.Status, &a.UpdatedAt); err != nil {
			return err
		}
		a.UpdatedAt = rollup.Micro(a.UpdatedAt)
		s.Accounts[id] = &a
	}
	return rows.Err()
}

func scanSubscriptions(rows pgx.Rows, s *rollup.State) error {
	for rows.Next() {
		var id string
		var v rollup.Subscription
		if err := rows.Scan(&id, &v.AccountID, &v.Currency, &v.MRR, &v.Status, &v.HadMRR, &v.UpdatedAt); err != nil {
			return err
		}
		v.UpdatedAt = rollup.Micro(v.UpdatedAt)
		s.Subscriptions[id] = &v
	}
	return rows.Err()
}

func scanPayments(rows pgx.Rows, s *rollup.State) error {
	for rows.Next() {
		var id string
		var p rollup.Payment
		if err := rows.Scan(&id, &p.AccountID, &p.Gateway, &p.Currency); err != nil {
			return err
		}
		s.Payments[id] = &p
	}
	return rows.Err()
}

func scanInvoices(rows pgx.Rows, s *rollup.State) error {
	for rows.Next() {
		var id string
		var v rollup.Invoice
		var due, fin, closed *time.Time
		if err := rows.Scan(&id, &v.AccountID, &v.Currency, &v.Total, &v.AmountDue, &due, &fin, &closed, &v.Status, &v.UpdatedAt); err != nil {
			return err
		}
		if due != nil {
			v.DueDate = time.Date(due.Year(), due.Month(), due.Day(), 0, 0, 0, 0, time.UTC)
		}
		if fin != nil {
			v.FinalizedAt = rollup.Micro(*fin)
		}
		if closed != nil {
			v.ClosedAt = rollup.Micro(*closed)
		}
		v.UpdatedAt = rollup.Micro(v.UpdatedAt)
		s.Invoices[id] = &v
	}
	return rows.Err()
}

func scanDisputes(rows pgx.Rows, s *rollup.State) error {
	for rows.Next() {
		var k rollup.DisputeKey
		var d rollup.Dispute
		if err := rows.Scan(&k.Gateway, &k.ObjectID, &d.PaymentID, &d.Currency, &d.Amount, &d.OpenedAt); err != nil {
			return err
		}
		d.OpenedAt = rollup.Micro(d.OpenedAt)
		s.Disputes[k] = &d
	}
	return rows.Err()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Write stores effects and the dirty state rows in one round trip. Rollups
// are added to what is there; with all, every state row is written (a
// rebuild that emptied the state tables), otherwise only dirty ones.
//
// Statement order matters with concurrent batches: every batch writes the
// tables in this order and each table's rows in key order, so row locks are
// always taken in one order (no deadlock), and the rows every batch touches
// (the current hour's global rollups, today's version) come last, held
// only for the moments before commit.
func Write(ctx context.Context, tx pgx.Tx, eff *rollup.Effects, st *rollup.State, all bool) error {
	b := &pgx.Batch{}
	queueAccountRollups(b, eff)
	queueRows(b, eff)
	queueState(b, st, all)
	queueGlobalRollups(b, eff)
	if len(eff.Days) > 0 {
		days := make([]time.Time, 0, len(eff.Days))
		for _, d := range slices.Sorted(maps.Keys(eff.Days)) {
			days = append(days, time.Unix(d, 0).UTC())
		}
		// New versions for the days whose figures changed (cached reports
		// of those days are keyed by them), and no snapshot of a day whose
		// figures changed survives: the tick writes it again.
		b.Queue(`INSERT INTO report_changes (day, version)
			SELECT d, nextval('report_change_seq') FROM unnest($1::date[]) AS d
			ON CONFLICT (day) DO UPDATE SET version = excluded.version`, days)
		b.Queue(`DELETE FROM report_snapshots WHERE day >= $1::date - 1`, days[0])
	}
	if b.Len() == 0 {
		return nil
	}
	return classify(tx.SendBatch(ctx, b).Close())
}

func queueGlobalRollups(b *pgx.Batch, eff *rollup.Effects) {
	if n := len(eff.Global); n > 0 {
		ks := slices.SortedFunc(maps.Keys(eff.Global), compareRoll)
		grain, cur, metric, dim := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		bucket := make([]time.Time, n)
		count := make([]int64, n)
		for i, k := range ks {
			c := eff.Global[k]
			grain[i], bucket[i], cur[i], metric[i], dim[i], count[i] =
				string(k.Grain), time.Unix(k.Bucket, 0).UTC(), k.Currency, k.Metric, k.Dim, c.Count
		}
		amount, typ := amounts(n, func(i int) rollup.Wide { return eff.Global[ks[i]].Amount })
		b.Queue(`INSERT INTO report_rollups AS r (grain, bucket, currency, metric, dim, count, amount)
			SELECT g, b, c, m, d, n, a::numeric
			FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::`+typ+`[]) AS x(g, b, c, m, d, n, a)
			ON CONFLICT (grain, bucket, currency, metric, dim)
			DO UPDATE SET count = r.count + excluded.count, amount = r.amount + excluded.amount`,
			grain, bucket, cur, metric, dim, count, amount)
	}
}

// amounts is the parameter of n rollup amounts for the numeric columns:
// int64s when every one fits (a batch's usual case: a binary bigint array,
// no decimal text to write and parse), else their decimal text.
func amounts(n int, at func(i int) rollup.Wide) (any, string) {
	small := make([]int64, n)
	for i := range small {
		v, ok := at(i).Int64()
		if !ok {
			text := make([]string, n)
			for j := range text {
				text[j] = at(j).String()
			}
			return text, "text"
		}
		small[i] = v
	}
	return small, "bigint"
}

func queueAccountRollups(b *pgx.Batch, eff *rollup.Effects) {
	if n := len(eff.Accounts); n > 0 {
		ks := slices.SortedFunc(maps.Keys(eff.Accounts), compareAccount)
		acct, cur, metric, dim := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		day := make([]time.Time, n)
		count := make([]int64, n)
		for i, k := range ks {
			c := eff.Accounts[k]
			acct[i], day[i], cur[i], metric[i], dim[i], count[i] =
				k.Account, time.Unix(k.Day, 0).UTC(), k.Currency, k.Metric, k.Dim, c.Count
		}
		amount, typ := amounts(n, func(i int) rollup.Wide { return eff.Accounts[ks[i]].Amount })
		b.Queue(`INSERT INTO report_account_rollups AS r (account_id, day, currency, metric, dim, count, amount)
			SELECT ac, dy, c, m, d, n, a::numeric
			FROM unnest($1::uuid[], $2::date[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::`+typ+`[]) AS x(ac, dy, c, m, d, n, a)
			ON CONFLICT (account_id, day, currency, metric, dim)
			DO UPDATE SET count = r.count + excluded.count, amount = r.amount + excluded.amount`,
			acct, day, cur, metric, dim, count, amount)
	}
}

func queueRows(b *pgx.Batch, eff *rollup.Effects) {
	if n := len(eff.Recon); n > 0 {
		cols := make([][]string, 10)
		for i := range cols {
			cols[i] = make([]string, n)
		}
		amount := make([]int64, n)
		at := make([]time.Time, n)
		for i, r := range eff.Recon {
			for j, v := range []string{r.Source, r.EventID, r.Side, r.Kind, r.PaymentID, r.AccountID, r.Gateway, r.Currency, r.Status, r.Ref} {
				cols[j][i] = v
			}
			amount[i], at[i] = r.Amount, r.At
		}
		b.Queue(`INSERT INTO report_recon (source, event_id, side, kind, payment_id, account_id, gateway, currency, status, ref, amount, at)
			SELECT s, e, sd, k, p, nullif(a, '')::uuid, g, c, st, rf, am, t
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			            $9::text[], $10::text[], $11::bigint[], $12::timestamptz[]) AS x(s, e, sd, k, p, a, g, c, st, rf, am, t)
			ON CONFLICT (payment_id, source, event_id) DO NOTHING`,
			cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], amount, at)
	}
	if n := len(eff.InvoicePayments); n > 0 {
		src, ids, inv := make([]string, n), make([]string, n), make([]string, n)
		at := make([]time.Time, n)
		amount := make([]int64, n)
		for i, p := range eff.InvoicePayments {
			src[i], ids[i], inv[i], at[i], amount[i] = p.Source, p.EventID, p.InvoiceID, p.At, p.Amount
		}
		b.Queue(`INSERT INTO report_invoice_payments (source, event_id, invoice_id, at, amount)
			SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::bigint[])
			ON CONFLICT (source, event_id) DO NOTHING`, src, ids, inv, at, amount)
	}
	if n := len(eff.Unapplied); n > 0 {
		cols := make([][]string, 9)
		for i := range cols {
			cols[i] = make([]string, n)
		}
		amount := make([]int64, n)
		at := make([]time.Time, n)
		for i, u := range eff.Unapplied {
			for j, v := range []string{u.Source, u.EventID, u.PaymentID, u.InvoiceID, u.AccountID, u.UserID, u.Currency,
				u.Reason, u.InvoiceStatus} {
				cols[j][i] = v
			}
			amount[i], at[i] = u.Amount, u.At
		}
		b.Queue(`INSERT INTO report_unapplied (source, event_id, payment_id, invoice_id, account_id, user_id, currency,
				reason, invoice_status, amount, at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[],
			                     $8::text[], $9::text[], $10::bigint[], $11::timestamptz[])
			ON CONFLICT (source, event_id) DO NOTHING`,
			cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], amount, at)
	}
}

func queueState(b *pgx.Batch, st *rollup.State, all bool) {
	rows := st.Changed(all)
	if ids := rows.Accounts; len(ids) > 0 {
		n := len(ids)
		user, number, cur, status := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		at := make([]time.Time, n)
		for i, id := range ids {
			a := st.Accounts[id]
			user[i], number[i], cur[i], status[i], at[i] = a.UserID, a.Number, a.Currency, a.Status, a.UpdatedAt
		}
		b.Queue(`INSERT INTO report_accounts (account_id, user_id, number, currency, status, updated_at)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
			ON CONFLICT (account_id) DO UPDATE SET user_id = excluded.user_id, number = excluded.number,
				currency = excluded.currency, status = excluded.status, updated_at = excluded.updated_at`,
			ids, user, number, cur, status, at)
	}
	if ids := rows.Subscriptions; len(ids) > 0 {
		n := len(ids)
		acct, cur, status := make([]string, n), make([]string, n), make([]string, n)
		mrr := make([]int64, n)
		had := make([]bool, n)
		at := make([]time.Time, n)
		for i, id := range ids {
			s := st.Subscriptions[id]
			acct[i], cur[i], mrr[i], status[i], had[i], at[i] = s.AccountID, s.Currency, s.MRR, s.Status, s.HadMRR, s.UpdatedAt
		}
		b.Queue(`INSERT INTO report_subscriptions (subscription_id, account_id, currency, mrr, status, had_mrr, updated_at)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::boolean[], $7::timestamptz[])
			ON CONFLICT (subscription_id) DO UPDATE SET account_id = excluded.account_id, currency = excluded.currency,
				mrr = excluded.mrr, status = excluded.status, had_mrr = excluded.had_mrr, updated_at = excluded.updated_at`,
			ids, acct, cur, mrr, status, had, at)
	}
	if ids := rows.Payments; len(ids) > 0 {
		n := len(ids)
		acct, gw, cur := make([]string, n), make([]string, n), make([]string, n)
		for i, id := range ids {
			p := st.Payments[id]
			acct[i], gw[i], cur[i] = p.AccountID, p.Gateway, p.Currency
		}
		b.Queue(`INSERT INTO report_payments (payment_id, account_id, gateway, currency)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])
			ON CONFLICT (payment_id) DO UPDATE SET account_id = excluded.account_id, gateway = excluded.gateway,
				currency = excluded.currency`, ids, acct, gw, cur)
	}
	if ids := rows.Invoices; len(ids) > 0 {
		n := len(ids)
		acct, cur, status := make([]string, n), make([]string, n), make([]string, n)
		total, due := make([]int64, n), make([]int64, n)
		dueDate, fin, closed := make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
		at := make([]time.Time, n)
		for i, id := range ids {
			v := st.Invoices[id]
			acct[i], cur[i], status[i], total[i], due[i], at[i] = v.AccountID, v.Currency, v.Status, v.Total, v.AmountDue, v.UpdatedAt
			dueDate[i], fin[i], closed[i] = nullTime(v.DueDate), nullTime(v.FinalizedAt), nullTime(v.ClosedAt)
		}
		b.Queue(`INSERT INTO report_invoices (invoice_id, account_id, currency, total, amount_due, due_date, finalized_at, closed_at, status, updated_at)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::date[],
			                     $7::timestamptz[], $8::timestamptz[], $9::text[], $10::timestamptz[])
			ON CONFLICT (invoice_id) DO UPDATE SET account_id = excluded.account_id, currency = excluded.currency,
				total = excluded.total, amount_due = excluded.amount_due, due_date = excluded.due_date,
				finalized_at = excluded.finalized_at, closed_at = excluded.closed_at, status = excluded.status,
				updated_at = excluded.updated_at`,
			ids, acct, cur, total, due, dueDate, fin, closed, status, at)
	}
	if ids := rows.Refunds; len(ids) > 0 {
		n := len(ids)
		pay, src, evid := make([]string, n), make([]string, n), make([]string, n)
		ok, failed := make([]*time.Time, n), make([]*time.Time, n)
		for i, id := range ids {
			r := st.Refunds[id]
			pay[i], src[i], evid[i], ok[i], failed[i] = r.PaymentID, r.FailedSource, r.FailedID, nullTime(r.SucceededAt), nullTime(r.FailedAt)
		}
		b.Queue(`INSERT INTO report_refunds (`+refundCols+`)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[])
			ON CONFLICT (refund_id) DO UPDATE SET payment_id = excluded.payment_id, succeeded_at = excluded.succeeded_at,
				failed_at = excluded.failed_at, failed_source = excluded.failed_source, failed_event = excluded.failed_event`,
			ids, pay, ok, failed, src, evid)
	}
	if ks := rows.Disputes; len(ks) > 0 {
		n := len(ks)
		gw, obj, pay, cur := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		amount := make([]int64, n)
		at := make([]time.Time, n)
		for i, k := range ks {
			d := st.Disputes[k]
			gw[i], obj[i], pay[i], cur[i], amount[i], at[i] = k.Gateway, k.ObjectID, d.PaymentID, d.Currency, d.Amount, d.OpenedAt
		}
		b.Queue(`INSERT INTO report_disputes (gateway, object_id, payment_id, currency, amount, opened_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[])
			ON CONFLICT (gateway, object_id) DO NOTHING`, gw, obj, pay, cur, amount, at)
	}
}

func compareRoll(a, b rollup.RollKey) int {
	return cmp.Or(cmp.Compare(a.Grain, b.Grain), cmp.Compare(a.Bucket, b.Bucket), cmp.Compare(a.Currency, b.Currency),
		cmp.Compare(a.Metric, b.Metric), cmp.Compare(a.Dim, b.Dim))
}

func compareAccount(a, b rollup.AccountKey) int {
	return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(a.Day, b.Day), cmp.Compare(a.Currency, b.Currency),
		cmp.Compare(a.Metric, b.Metric), cmp.Compare(a.Dim, b.Dim))
}

// Tx is a delivery's transaction as the event handler sees it: what it
// may do there, without SQL.
type Tx struct{ tx pgx.Tx }

// Ingest is Ingest in the delivery's transaction.
func (t Tx) Ingest(ctx context.Context, evs []rollup.Event) (Result, error) {
	return Ingest(ctx, t.tx, evs)
}

// LogBatch adapts an event handler on a Tx, which says which events the
// log held already, to the receiver's LogBatch.
func LogBatch(fn func(ctx context.Context, tx Tx, evs []events.Event) ([]bool, error)) events.LogBatchHandler {
	return func(ctx context.Context, tx pgx.Tx, evs []events.Event) ([]bool, error) { return fn(ctx, Tx{tx}, evs) }
}
