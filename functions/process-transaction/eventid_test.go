package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
)

// An event id reused with other bytes is parked with a message about the
// event id: on the Kafka side there is no Idempotency-Key header.
func TestReusedEventIDIsParkedNamingTheEventID(t *testing.T) {
	e := newEnv(t)
	a := e.account(uuid.NewString(), "EUR")
	first := events.Must(events.New(context.Background(), "kcat", "billfn.transaction.requested", a.ID,
		TransferRequest{FromAccountNumber: "SYS-EXTERNAL-EUR", ToAccountID: a.ID, Amount: 100, Currency: "EUR"}))
	if r := e.deliver(first); r.Code != 200 {
		t.Fatalf("first: %d %s", r.Code, r.Body)
	}
	other := events.Must(events.New(context.Background(), "kcat", "billfn.transaction.requested", a.ID,
		TransferRequest{FromAccountNumber: "SYS-EXTERNAL-EUR", ToAccountID: a.ID, Amount: 999, Currency: "EUR"}))
	other.SetID(first.ID())
	if r := e.deliver(other); r.Code != 200 || !strings.Contains(r.Body.String(), `"parked":1`) {
		t.Fatalf("reused id: %d %s", r.Code, r.Body)
	}
	if got := e.get(a.ID); got.Balance != 100 {
		t.Errorf("balance %d, want 100", got.Balance)
	}
	var msg string
	if err := e.d.Pool.QueryRow(context.Background(), `SELECT error FROM dead_letters WHERE event_id = $1`, first.ID()).Scan(&msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "event id") || !strings.Contains(msg, first.ID()) || strings.Contains(msg, "Idempotency-Key") {
		t.Errorf("parked with %q, want a message about the event id", msg)
	}
}
