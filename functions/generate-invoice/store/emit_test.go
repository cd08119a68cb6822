package store_test

import (
	"context"
	"testing"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// The events handler kicks the outbox publisher only when a delivery's
// handlers wrote outbox rows, which it learns from outbox.Tracking: Emit,
// EmitAll and Send note the write in the context of each emission that
// wrote, and in no other (a group commit's callers each keep their own).
func TestEmitsNoteTheirWritesInEachEmissionsContext(t *testing.T) {
	pool := testenv.FreshPool(t)
	st := store.New(pool, outbox.Writer{Source: "generate-invoice"})
	var group, wrote, none, emitted, sent, idle outbox.Written
	track := func(w *outbox.Written) context.Context { return outbox.Tracking(t.Context(), w) }
	ev := []invoicing.Event{invoicing.NewEvent(events.TypeInvoiceCreated, "inv-1", "acct-1", map[string]any{"id": "inv-1"})}
	if err := st.InTx(t.Context(), func(tx *store.Tx) error {
		if err := tx.EmitAll(track(&group), billing.Emission{Ctx: track(&wrote), Events: ev}, billing.Emission{Ctx: track(&none)}); err != nil {
			return err
		}
		if err := tx.Emit(track(&emitted), ev); err != nil {
			return err
		}
		if err := tx.Emit(track(&idle), nil); err != nil {
			return err
		}
		return tx.Send(track(&sent), outbox.Message{Topic: events.TopicBilling, Key: "acct-1",
			Event: events.Must(events.New(t.Context(), "generate-invoice", events.TypeInvoicePaid, "inv-1", map[string]any{"id": "inv-1"}))})
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		w    *outbox.Written
		want bool
	}{{"the group's transaction", &group, true}, {"a caller with events", &wrote, true}, {"a caller without", &none, false},
		{"Emit", &emitted, true}, {"Emit of nothing", &idle, false}, {"Send", &sent, true}} {
		if c.w.Load() != c.want {
			t.Errorf("%s: noted %v, want %v", c.name, c.w.Load(), c.want)
		}
	}
	var rows int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox WHERE source = 'generate-invoice'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Errorf("%d outbox rows, want 3", rows)
	}
}
