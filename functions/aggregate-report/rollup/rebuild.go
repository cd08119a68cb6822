package rollup

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Range is a half-open range of whole UTC days [From, To).
type Range struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Contains reports whether t falls in r.
func (r Range) Contains(t time.Time) bool { return !t.Before(r.From) && t.Before(r.To) }

// String formats r as dates.
func (r Range) String() string {
	return r.From.Format(time.DateOnly) + ".." + r.To.Format(time.DateOnly)
}

// Progress is told how many events were replayed out of how many.
type Progress func(done, total int64)

// Replayed is the result of replaying the log.
type Replayed struct {
	State   *State
	Effects *Effects
	Events  int64 // events replayed
	LastSeq int64 // the last log position replayed
}

// DefaultBatch is how many events a replay reads per query.
const DefaultBatch = 5000

// FullRange is the range of days the log covers (today when it is empty).
func FullRange(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, now time.Time) (Range, error) {
	var lo, hi *time.Time
	if err := q.QueryRow(ctx, `SELECT min(time), max(time) FROM report_events`).Scan(&lo, &hi); err != nil {
		return Range{}, err
	}
	if lo == nil {
		d := DayStart(now)
		return Range{d, d.AddDate(0, 0, 1)}, nil
	}
	return Range{DayStart(*lo), DayStart(*hi).AddDate(0, 0, 1)}, nil
}

const replayFilter = `((time >= $2 AND time < $3) OR type = ANY($4))`

// Replay applies the log to empty state, in log order, keeping the effects
// that fall in r. Events outside r are read only when they change state
// (subscriptions, invoices, payments, disputes, accounts), which is what
// makes a ranged replay cheap when most events are transfers.
func Replay(ctx context.Context, tx pgx.Tx, r Range, batch int, progress Progress) (*Replayed, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	stateful := StatefulTypes()
	var total int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM report_events WHERE seq > $1 AND `+replayFilter,
		int64(0), r.From, r.To, stateful).Scan(&total); err != nil {
		return nil, err
	}
	eff := NewEffects()
	eff.Keep = r.Contains
	rp := &Replayed{State: NewState(), Effects: eff}
	if progress != nil {
		progress(0, total)
	}
	for {
		n, err := rp.next(ctx, tx, r, stateful, batch)
		if err != nil {
			return nil, err
		}
		if progress != nil {
			progress(rp.Events, max(total, rp.Events))
		}
		if n < batch {
			return rp, nil
		}
	}
}

// next replays the next batch of the log after LastSeq.
func (rp *Replayed) next(ctx context.Context, tx pgx.Tx, r Range, stateful []string, batch int) (int, error) {
	rows, err := tx.Query(ctx, `SELECT seq, source, id, type, time, subject, data::text FROM report_events
		WHERE seq > $1 AND `+replayFilter+` ORDER BY seq LIMIT $5`, rp.LastSeq, r.From, r.To, stateful, batch)
	if err != nil {
		return 0, err
	}
	evs := make([]Event, 0, batch)
	for rows.Next() {
		var ev Event
		var data string
		if err := rows.Scan(&ev.Seq, &ev.Source, &ev.ID, &ev.Type, &ev.Time, &ev.Subject, &data); err != nil {
			rows.Close()
			return 0, err
		}
		ev.Time, ev.Data = Micro(ev.Time), []byte(data)
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	agg := Aggregator{State: rp.State, Effects: rp.Effects}
	for _, ev := range evs {
		// An event that fails here failed when it streamed too (it was
		// parked and never reached the log), so this is a defect.
		if err := agg.Apply(ev); err != nil {
			return 0, fmt.Errorf("replay seq %d: %w", ev.Seq, err)
		}
		rp.LastSeq = ev.Seq
	}
	rp.Events += int64(len(evs))
	return len(evs), nil
}

// LoadRange reads the streamed rollups and rows of r.
func LoadRange(ctx context.Context, tx pgx.Tx, r Range) (*Effects, error) {
	eff := NewEffects()
	b := &pgx.Batch{}
	b.Queue(`SELECT grain, bucket, currency, metric, dim, count, amount FROM report_rollups
		WHERE bucket >= $1 AND bucket < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k RollKey
			var grain string
			var bucket time.Time
			var c Cell
			if err := rows.Scan(&grain, &bucket, &k.Currency, &k.Metric, &k.Dim, &c.Count, &c.Amount); err != nil {
				return err
			}
			k.Grain, k.Bucket = grain[0], bucket.Unix()
			eff.Global[k] = c
		}
		return rows.Err()
	})
	b.Queue(`SELECT account_id::text, day, currency, metric, dim, count, amount FROM report_account_rollups
		WHERE day >= $1::date AND day < $2::date`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k AccountKey
			var day time.Time
			var c Cell
			if err := rows.Scan(&k.Account, &day, &k.Currency, &k.Metric, &k.Dim, &c.Count, &c.Amount); err != nil {
				return err
			}
			k.Day = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC).Unix()
			eff.Accounts[k] = c
		}
		return rows.Err()
	})
	b.Queue(`SELECT source, event_id, side, kind, payment_id, coalesce(account_id::text, ''), gateway, currency, amount, status, ref, at
		FROM report_recon WHERE at >= $1 AND at < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var x ReconRow
			if err := rows.Scan(&x.Source, &x.EventID, &x.Side, &x.Kind, &x.PaymentID, &x.AccountID, &x.Gateway,
				&x.Currency, &x.Amount, &x.Status, &x.Ref, &x.At); err != nil {
				return err
			}
			x.At = Micro(x.At)
			eff.Recon = append(eff.Recon, x)
		}
		return rows.Err()
	})
	b.Queue(`SELECT source, event_id, invoice_id::text, at, amount FROM report_invoice_payments
		WHERE at >= $1 AND at < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var p InvoicePayment
			if err := rows.Scan(&p.Source, &p.EventID, &p.InvoiceID, &p.At, &p.Amount); err != nil {
				return err
			}
			p.At = Micro(p.At)
			eff.InvoicePayments = append(eff.InvoicePayments, p)
		}
		return rows.Err()
	})
	b.Queue(`SELECT source, event_id, payment_id::text, invoice_id::text, account_id::text, user_id, currency, amount,
			reason, invoice_status, at
		FROM report_unapplied WHERE at >= $1 AND at < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var u UnappliedRow
			if err := rows.Scan(&u.Source, &u.EventID, &u.PaymentID, &u.InvoiceID, &u.AccountID, &u.UserID, &u.Currency,
				&u.Amount, &u.Reason, &u.InvoiceStatus, &u.At); err != nil {
				return err
			}
			u.At = Micro(u.At)
			eff.Unapplied = append(eff.Unapplied, u)
		}
		return rows.Err()
	})
	return eff, tx.SendBatch(ctx, b).Close()
}

// Difference is one row where the streamed and the recomputed figures differ.
type Difference struct {
	Table      string `json:"table"`
	Key        string `json:"key"`
	Streamed   string `json:"streamed"`
	Recomputed string `json:"recomputed"`
}

// Report is the outcome of a check or a rebuild.
type Report struct {
	From        string       `json:"from"`
	To          string       `json:"to"`
	Events      int64        `json:"events_replayed"`
	Rows        int          `json:"rows_compared"`
	Differences int          `json:"differences"`
	Samples     []Difference `json:"samples,omitempty"` // the first differences
	Rebuilt     bool         `json:"rebuilt"`
	Elapsed     string       `json:"elapsed"`
}

// Equal reports whether streamed and recomputed agreed.
func (r Report) Equal() bool { return r.Differences == 0 }

const sampleMax = 20

type comparer struct {
	rows, n int
	diffs   []Difference
}

func compareMaps[K comparable, V comparable](c *comparer, table string, streamed, recomputed map[K]V, keyf func(K) string) {
	differ := func(k K) {
		var sv, rv any = "missing", "missing"
		if v, ok := streamed[k]; ok {
			sv = v
		}
		if v, ok := recomputed[k]; ok {
			rv = v
		}
		c.n++
		c.diffs = append(c.diffs, Difference{table, keyf(k), fmt.Sprint(sv), fmt.Sprint(rv)})
	}
	for k, s := range streamed {
		c.rows++
		if r, ok := recomputed[k]; !ok || r != s {
			differ(k)
		}
	}
	for k := range recomputed {
		if _, ok := streamed[k]; !ok {
			c.rows++
			differ(k)
		}
	}
}

func deref[K comparable, V any](m map[K]*V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = *v
	}
	return out
}

// Compare lists every difference between streamed and recomputed effects
// of a range and between the streamed and recomputed state.
func Compare(streamed, recomputed *Effects, dbState, replayState *State) (rows, n int, samples []Difference) {
	c := &comparer{}
	compareMaps(c, "report_rollups", streamed.Global, recomputed.Global, func(k RollKey) string {
		return fmt.Sprintf("%c %s %s %s %q", k.Grain, time.Unix(k.Bucket, 0).UTC().Format(time.RFC3339), k.Currency, k.Metric, k.Dim)
	})
	compareMaps(c, "report_account_rollups", streamed.Accounts, recomputed.Accounts, func(k AccountKey) string {
		return fmt.Sprintf("%s %s %s %s %q", k.Account, time.Unix(k.Day, 0).UTC().Format(time.DateOnly), k.Currency, k.Metric, k.Dim)
	})
	byEvent := func(rows []ReconRow) map[string]ReconRow {
		m := make(map[string]ReconRow, len(rows))
		for _, r := range rows {
			r.At = r.At.UTC()
			m[r.Source+" "+r.EventID] = r
		}
		return m
	}
	compareMaps(c, "report_recon", byEvent(streamed.Recon), byEvent(recomputed.Recon), func(k string) string { return k })
	payments := func(rows []InvoicePayment) map[string]InvoicePayment {
		m := make(map[string]InvoicePayment, len(rows))
		for _, p := range rows {
			p.At = p.At.UTC()
			m[p.Source+" "+p.EventID] = p
		}
		return m
	}
	compareMaps(c, "report_invoice_payments", payments(streamed.InvoicePayments), payments(recomputed.InvoicePayments),
		func(k string) string { return k })
	unapplied := func(rows []UnappliedRow) map[string]UnappliedRow {
		m := make(map[string]UnappliedRow, len(rows))
		for _, u := range rows {
			u.At = u.At.UTC()
			m[u.Source+" "+u.EventID] = u
		}
		return m
	}
	compareMaps(c, "report_unapplied", unapplied(streamed.Unapplied), unapplied(recomputed.Unapplied),
		func(k string) string { return k })
	if dbState != nil && replayState != nil {
		id := func(k string) string { return k }
		compareMaps(c, "report_accounts", deref(dbState.Accounts), deref(replayState.Accounts), id)
		compareMaps(c, "report_subscriptions", deref(dbState.Subscriptions), deref(replayState.Subscriptions), id)
		compareMaps(c, "report_payments", deref(dbState.Payments), deref(replayState.Payments), id)
		compareMaps(c, "report_invoices", deref(dbState.Invoices), deref(replayState.Invoices), id)
		compareMaps(c, "report_disputes", deref(dbState.Disputes), deref(replayState.Disputes),
			func(k DisputeKey) string { return k.Gateway + " " + k.ObjectID })
	}
	slices.SortFunc(c.diffs, func(a, b Difference) int {
		if a.Table != b.Table {
			return strings.Compare(a.Table, b.Table)
		}
		return strings.Compare(a.Key, b.Key)
	})
	return c.rows, c.n, c.diffs[:min(len(c.diffs), sampleMax)]
}

// Check replays the log for r and compares with what streaming wrote. It
// reads one snapshot (repeatable read), in which the log and the rollups
// are consistent because they commit together; it locks nothing.
func Check(ctx context.Context, pool *pgxpool.Pool, r Range, batch int, progress Progress) (Report, error) {
	start := time.Now()
	rep := Report{From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly)}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rp, err := Replay(ctx, tx, r, batch, progress)
		if err != nil {
			return err
		}
		streamed, err := LoadRange(ctx, tx, r)
		if err != nil {
			return err
		}
		st, err := LoadState(ctx, tx)
		if err != nil {
			return err
		}
		rep.Events = rp.Events
		rep.Rows, rep.Differences, rep.Samples = Compare(streamed, rp.Effects, st, rp.State)
		return nil
	})
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, err
}

// quiescentSnapshot runs fn in a read-only repeatable-read transaction
// whose snapshot was taken while no writer was in flight: the writers'
// lock is held exclusively (on another connection) while the snapshot is
// taken, then released at once. So every logged event up to the last one
// the snapshot sees is in it (no batch with lower log positions commits
// later), and a rebuild can catch up with "seq > last seen".
func quiescentSnapshot(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, LockKey); err != nil {
		return err
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, LockKey); err != nil {
				conn.Conn().PgConn().Close(context.Background()) // a closed session drops its locks
			}
		}
	}
	defer unlock()
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // the snapshot is taken here
			return err
		}
		unlock()
		return fn(tx)
	})
}

// Rebuild recomputes the rollups of r (and the whole state) from the log
// and replaces what streaming wrote. The long replay reads a snapshot
// without blocking deliveries; the short write takes the writers' lock,
// replays what landed meanwhile, and swaps the rows in one transaction.
// The report lists what differed before the rebuild.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, r Range, batch int, progress Progress) (Report, error) {
	start := time.Now()
	if batch <= 0 {
		batch = DefaultBatch
	}
	rep := Report{From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly)}
	var rp *Replayed
	err := quiescentSnapshot(ctx, pool, func(tx pgx.Tx) error {
		var err error
		rp, err = Replay(ctx, tx, r, batch, progress)
		return err
	})
	if err != nil {
		return rep, err
	}
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := Lock(ctx, tx); err != nil {
			return err
		}
		stateful := StatefulTypes()
		for {
			n, err := rp.next(ctx, tx, r, stateful, batch)
			if err != nil {
				return err
			}
			if n < batch {
				break
			}
		}
		streamed, err := LoadRange(ctx, tx, r)
		if err != nil {
			return err
		}
		st, err := LoadState(ctx, tx)
		if err != nil {
			return err
		}
		rep.Events = rp.Events
		rep.Rows, rep.Differences, rep.Samples = Compare(streamed, rp.Effects, st, rp.State)
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM report_rollups WHERE bucket >= $1 AND bucket < $2`, r.From, r.To)
		b.Queue(`DELETE FROM report_account_rollups WHERE day >= $1::date AND day < $2::date`, r.From, r.To)
		b.Queue(`DELETE FROM report_recon WHERE at >= $1 AND at < $2`, r.From, r.To)
		b.Queue(`DELETE FROM report_invoice_payments WHERE at >= $1 AND at < $2`, r.From, r.To)
		b.Queue(`DELETE FROM report_unapplied WHERE at >= $1 AND at < $2`, r.From, r.To)
		for _, t := range []string{"report_accounts", "report_subscriptions", "report_payments", "report_invoices", "report_disputes"} {
			b.Queue(`DELETE FROM ` + t)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		// Every day of the range gets a new version: cached reports of it go.
		for d := r.From; d.Before(r.To); d = d.AddDate(0, 0, 1) {
			rp.Effects.Days[d.Unix()] = true
		}
		return Write(ctx, tx, rp.Effects, rp.State, true)
	})
	rep.Rebuilt = err == nil
	if rep.Rebuilt {
		// Every row was rewritten: until the visibility map is set again
		// rankings' index-only scans read the heap, and the planner's
		// statistics are old. Best effort: autovacuum gets there anyway.
		_, _ = pool.Exec(ctx, `VACUUM (ANALYZE) report_rollups, report_account_rollups, report_recon,
			report_invoice_payments, report_unapplied, report_accounts, report_subscriptions, report_payments, report_invoices, report_disputes`)
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, err
}
