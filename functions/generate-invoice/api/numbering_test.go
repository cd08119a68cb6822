package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
)

// TestConcurrentFinalizationsNeitherDuplicateNorSkip finalizes 50 drafts
// at once over HTTP: the numbers are exactly 1..50 of the series.
func TestConcurrentFinalizationsNeitherDuplicateNorSkip(t *testing.T) {
	g := newRig(t)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = g.createInvoice(uuid.NewString(), nil).ID
	}
	numbers := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rec := g.asAdmin("POST", "/invoices/"+ids[i]+"/finalize", nil)
			if rec.Code != 200 {
				errs <- fmt.Sprintf("%d %s", rec.Code, rec.Body)
				return
			}
			var inv invoicing.Invoice
			if err := jsonUnmarshal(rec.Body.Bytes(), &inv); err != nil || inv.Number == nil {
				errs <- rec.Body.String()
				return
			}
			numbers[i] = *inv.Number
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	sort.Strings(numbers)
	for i, got := range numbers {
		if want := invoicing.FormatNumber(g.s.cfg.NumberPrefix, 2026, int64(i+1)); got != want {
			t.Fatalf("number %d = %s, want %s (all: %v)", i, got, want, numbers)
		}
	}
}

// TestRolledBackFinalizationReturnsItsNumber: a number is taken inside the
// finalizing transaction, so a rollback leaves no gap.
func TestRolledBackFinalizationReturnsItsNumber(t *testing.T) {
	g := newRig(t)
	a := g.createInvoice(uuid.NewString(), nil)
	ctx := context.Background()
	errRollback := errors.New("roll back")
	err := g.s.st.InTx(ctx, func(tx *store.Tx) error {
		inv, err := store.GetInvoice(ctx, tx, a.ID, true)
		if err != nil {
			return err
		}
		if err := invoicing.CheckFinalize(inv, g.clock.Now(), g.s.cfg.DefaultNetDays); err != nil {
			return err
		}
		if _, err := invoicing.Finalize(ctx, tx, []*invoicing.Invoice{inv}, g.clock.Now()); err != nil {
			return err
		}
		if want := invoicing.FormatNumber(g.s.cfg.NumberPrefix, 2026, 1); *inv.Number != want {
			t.Errorf("number = %s", *inv.Number)
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatal(err)
	}
	must(t, g.asAdmin("POST", "/invoices/"+a.ID+"/finalize", nil), 200)
	if got := g.invoice(a.ID); *got.Number != invoicing.FormatNumber(g.s.cfg.NumberPrefix, 2026, 1) {
		t.Fatalf("after a rollback the number is %s, want the same first number", *got.Number)
	}
}

// TestNumberSeriesAreGapFreeAcrossBatchesAndYears: batches take ranges;
// a new year starts a new series; a custom prefix has its own series.
func TestNumberSeriesAreGapFreeAcrossBatchesAndYears(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	var firsts []int64
	err := g.s.st.InTx(ctx, func(tx *store.Tx) error {
		for _, n := range []int{3, 1, 5} {
			first, err := tx.ReserveNumbers(ctx, "GAP-2026", n)
			if err != nil {
				return err
			}
			firsts = append(firsts, first)
		}
		next, err := tx.ReserveNumbers(ctx, "GAP-2027", 1)
		firsts = append(firsts, next)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(firsts) != "[1 4 5 1]" {
		t.Fatalf("first numbers = %v", firsts)
	}
	if s := invoicing.FormatNumber("INV", 2026, 123); s != "INV-2026-000123" {
		t.Fatalf("format = %s", s)
	}
	if s := invoicing.FormatNumber("INV", 2026, 1234567); s != "INV-2026-1234567" {
		t.Fatalf("format = %s", s)
	}
}
