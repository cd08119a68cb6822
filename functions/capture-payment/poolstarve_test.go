package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// An event handler holds the receiver's transaction, one of the pool's
// connections: it must not wait for another. With as many deliveries in
// flight as the pool has connections (DB_MAX_CONNS, 10 in stack.yml), each
// would wait for a connection none of them gives back, and so would every
// request, until their deadlines: POST /payments answered 504 in the mixed
// bench. Here the test holds every connection but one, and an invoice to
// collect (charge_automatically; its account known, without a default
// payment method) is still applied: its account is read in the
// transaction.
func TestAnInvoiceIsCollectedOnTheReceiversOwnConnection(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	var held []*pgxpool.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Release()
		}
	})
	for range g.d.Pool.Config().MaxConns - 1 {
		c, err := g.d.Pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	// The deadline only ends the wait of a handler that needs a second
	// connection (ExecTimeout does in a function); it is not a timing.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := g.kit.Delivery(t, invoiceFinalized(t, g.account, uuid.NewString(), 4200)).WithContext(dctx)
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("delivery with one connection free: %d %s", rec.Code, rec.Body)
	}
}
