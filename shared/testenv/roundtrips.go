package testenv

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// RoundTrips is a pgx tracer (pgx.ConnConfig.Tracer) that counts the
// statements and batches sent to PostgreSQL, each one round trip at least,
// and keeps their SQL (a batch's as "batch: " and its statements joined by
// "; "), so a test can pin how many round trips an operation costs.
type RoundTrips struct {
	mu  sync.Mutex
	n   int
	sql []string
}

func (r *RoundTrips) note(sql string) {
	r.mu.Lock()
	r.n++
	r.sql = append(r.sql, strings.Join(strings.Fields(sql), " "))
	r.mu.Unlock()
}

// Count is how many round trips were made so far, and their SQL.
func (r *RoundTrips) Count() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, append([]string(nil), r.sql...)
}

func (r *RoundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.note(d.SQL)
	return ctx
}

func (r *RoundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *RoundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	var sqls []string
	if d.Batch != nil {
		for _, q := range d.Batch.QueuedQueries {
			sqls = append(sqls, q.SQL)
		}
	}
	r.note("batch: " + strings.Join(sqls, "; "))
	return ctx
}

func (r *RoundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *RoundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
