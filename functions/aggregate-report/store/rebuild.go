package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
)

// FullRange is the range of days the log covers (today when it is empty).
func FullRange(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, now time.Time) (rollup.Range, error) {
	var lo, hi *time.Time
	if err := q.QueryRow(ctx, `SELECT min(time), max(time) FROM report_events`).Scan(&lo, &hi); err != nil {
		return rollup.Range{}, err
	}
	if lo == nil {
		d := rollup.DayStart(now)
		return rollup.Range{From: d, To: d.AddDate(0, 0, 1)}, nil
	}
	return rollup.Range{From: rollup.DayStart(*lo), To: rollup.DayStart(*hi).AddDate(0, 0, 1)}, nil
}

const replayFilter = `((time >= $2 AND time < $3) OR type = ANY($4))`

// Replay applies the log to empty state, in log order, keeping the effects
// that fall in r. Events outside r are read only when they change state
// (subscriptions, invoices, payments, disputes, accounts), which is what
// makes a ranged replay cheap when most events are transfers.
func Replay(ctx context.Context, tx pgx.Tx, r rollup.Range, batch int, progress rollup.Progress) (*rollup.Replayed, error) {
	if batch <= 0 {
		batch = rollup.DefaultBatch
	}
	stateful := rollup.StatefulTypes()
	var total int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM report_events WHERE seq > $1 AND `+replayFilter,
		int64(0), r.From, r.To, stateful).Scan(&total); err != nil {
		return nil, err
	}
	rp := rollup.NewReplay(r)
	if progress != nil {
		progress(0, total)
	}
	for {
		n, err := replayNext(ctx, tx, rp, r, stateful, batch)
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
func replayNext(ctx context.Context, tx pgx.Tx, rp *rollup.Replayed, r rollup.Range, stateful []string, batch int) (int, error) {
	rows, err := tx.Query(ctx, `SELECT seq, source, id, type, time, subject, data::text FROM report_events
		WHERE seq > $1 AND `+replayFilter+` ORDER BY seq LIMIT $5`, rp.LastSeq, r.From, r.To, stateful, batch)
	if err != nil {
		return 0, err
	}
	evs := make([]rollup.Event, 0, batch)
	for rows.Next() {
		var ev rollup.Event
		var data string
		if err := rows.Scan(&ev.Seq, &ev.Source, &ev.ID, &ev.Type, &ev.Time, &ev.Subject, &data); err != nil {
			rows.Close()
			return 0, err
		}
		ev.Time, ev.Data = rollup.Micro(ev.Time), []byte(data)
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return len(evs), rp.Apply(evs)
}

// LoadRange reads the streamed rollups and rows of r.
func LoadRange(ctx context.Context, tx pgx.Tx, r rollup.Range) (*rollup.Effects, error) {
	eff := rollup.NewEffects()
	b := &pgx.Batch{}
	// Amounts are numeric (sums beyond int64 are kept, see rollup.Wide),
	// read as their decimal text.
	b.Queue(`SELECT grain, bucket, currency, metric, dim, count, amount::text FROM report_rollups
		WHERE bucket >= $1 AND bucket < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k rollup.RollKey
			var grain, amount string
			var bucket time.Time
			var c rollup.Sum
			if err := rows.Scan(&grain, &bucket, &k.Currency, &k.Metric, &k.Dim, &c.Count, &amount); err != nil {
				return err
			}
			var err error
			if c.Amount, err = rollup.ParseWide(amount); err != nil {
				return err
			}
			k.Grain, k.Bucket = grain[0], bucket.Unix()
			eff.Global[k] = c
		}
		return rows.Err()
	})
	b.Queue(`SELECT account_id::text, day, currency, metric, dim, count, amount::text FROM report_account_rollups
		WHERE day >= $1::date AND day < $2::date`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var k rollup.AccountKey
			var day time.Time
			var amount string
			var c rollup.Sum
			if err := rows.Scan(&k.Account, &day, &k.Currency, &k.Metric, &k.Dim, &c.Count, &amount); err != nil {
				return err
			}
			var err error
			if c.Amount, err = rollup.ParseWide(amount); err != nil {
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
			var x rollup.ReconRow
			if err := rows.Scan(&x.Source, &x.EventID, &x.Side, &x.Kind, &x.PaymentID, &x.AccountID, &x.Gateway,
				&x.Currency, &x.Amount, &x.Status, &x.Ref, &x.At); err != nil {
				return err
			}
			x.At = rollup.Micro(x.At)
			eff.Recon = append(eff.Recon, x)
		}
		return rows.Err()
	})
	b.Queue(`SELECT source, event_id, invoice_id::text, at, amount FROM report_invoice_payments
		WHERE at >= $1 AND at < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var p rollup.InvoicePayment
			if err := rows.Scan(&p.Source, &p.EventID, &p.InvoiceID, &p.At, &p.Amount); err != nil {
				return err
			}
			p.At = rollup.Micro(p.At)
			eff.InvoicePayments = append(eff.InvoicePayments, p)
		}
		return rows.Err()
	})
	b.Queue(`SELECT source, event_id, payment_id::text, invoice_id::text, account_id::text, user_id, currency, amount,
			reason, invoice_status, at
		FROM report_unapplied WHERE at >= $1 AND at < $2`, r.From, r.To).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var u rollup.UnappliedRow
			if err := rows.Scan(&u.Source, &u.EventID, &u.PaymentID, &u.InvoiceID, &u.AccountID, &u.UserID, &u.Currency,
				&u.Amount, &u.Reason, &u.InvoiceStatus, &u.At); err != nil {
				return err
			}
			u.At = rollup.Micro(u.At)
			eff.Unapplied = append(eff.Unapplied, u)
		}
		return rows.Err()
	})
	return eff, tx.SendBatch(ctx, b).Close()
}

// compare fills rep with the differences between replay rp and what
// streaming wrote for r (its rollups and rows, and the whole state).
func compare(ctx context.Context, tx pgx.Tx, r rollup.Range, rp *rollup.Replayed, rep *rollup.Report) error {
	streamed, err := LoadRange(ctx, tx, r)
	if err != nil {
		return err
	}
	st, err := LoadState(ctx, tx)
	if err != nil {
		return err
	}
	rep.Events = rp.Events
	rep.Rows, rep.Differences, rep.Samples = rollup.Compare(streamed, rp.Effects, st, rp.State)
	return nil
}

// Check replays the log for r and compares with what streaming wrote. It
// reads one snapshot (repeatable read), in which the log and the rollups
// are consistent because they commit together; it locks nothing.
func Check(ctx context.Context, pool *pgxpool.Pool, r rollup.Range, batch int, progress rollup.Progress) (rollup.Report, error) {
	start := time.Now()
	rep := rollup.Report{From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly)}
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rp, err := Replay(ctx, tx, r, batch, progress)
		if err != nil {
			return err
		}
		return compare(ctx, tx, r, rp, &rep)
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
func Rebuild(ctx context.Context, pool *pgxpool.Pool, r rollup.Range, batch int, progress rollup.Progress) (rollup.Report, error) {
	start := time.Now()
	if batch <= 0 {
		batch = rollup.DefaultBatch
	}
	rep := rollup.Report{From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly)}
	var rp *rollup.Replayed
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
		stateful := rollup.StatefulTypes()
		for {
			n, err := replayNext(ctx, tx, rp, r, stateful, batch)
			if err != nil {
				return err
			}
			if n < batch {
				break
			}
		}
		if err := compare(ctx, tx, r, rp, &rep); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM report_rollups WHERE bucket >= $1 AND bucket < $2`, r.From, r.To)
		b.Queue(`DELETE FROM report_account_rollups WHERE day >= $1::date AND day < $2::date`, r.From, r.To)
		b.Queue(`DELETE FROM report_recon WHERE at >= $1 AND at < $2`, r.From, r.To)
		b.Queue(`DELETE FROM report_invoice_payments WHERE at >= $1 AND at < $2`, r.From, r.To)
		b.Queue(`DELETE FROM report_unapplied WHERE at >= $1 AND at < $2`, r.From, r.To)
		for _, t := range []string{"report_accounts", "report_subscriptions", "report_payments", "report_invoices", "report_disputes", "report_refunds"} {
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
			report_invoice_payments, report_unapplied, report_accounts, report_subscriptions, report_payments, report_invoices, report_disputes, report_refunds`)
	}
	rep.Elapsed = time.Since(start).Round(time.Millisecond).String()
	return rep, err
}
