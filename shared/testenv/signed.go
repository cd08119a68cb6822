package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/events"
)

// SignedAsWritten is the events of the outbox rows that where selects (a
// condition on outbox's columns, args its arguments), each checked to have
// been signed as it was written: its row names kid, the writing function's
// origin key, and it verifies with origins as it is in the row. Stop the
// function's publisher first, so the rows stay to be read.
func SignedAsWritten(tb testing.TB, pool *pgxpool.Pool, kid string, origins *events.OriginKeys, where string, args ...any) []events.Event {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `SELECT payload, origin_kid FROM outbox WHERE `+where, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close() // a failure below must not leave the pool waiting for its connection
	var evs []events.Event
	for rows.Next() {
		var (
			payload []byte
			rowKid  *string
		)
		if err := rows.Scan(&payload, &rowKid); err != nil {
			tb.Fatal(err)
		}
		ev, err := events.Unmarshal(payload)
		if err != nil {
			tb.Fatal(err)
		}
		if rowKid == nil || *rowKid != kid {
			tb.Fatalf("%s of %s written with origin_kid %v, want the function's key %s", ev.Type(), ev.Subject(), rowKid, kid)
		}
		if err := origins.Verify(ev); err != nil {
			tb.Fatalf("%s of %s as written: %v", ev.Type(), ev.Subject(), err)
		}
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return evs
}
