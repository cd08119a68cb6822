package api

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
)

// holdSeries locks the invoice number series of g's default prefix in a
// transaction of its own, as a finalization that has not committed yet
// does, until the returned release is called.
func (g *rig) holdSeries(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := g.d.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	series := g.s.cfg.NumberPrefix + "-2026"
	if _, err := tx.Exec(ctx, `INSERT INTO invoice_number_sequences AS s (prefix, last_value) VALUES ($1, 0)
		ON CONFLICT (prefix) DO UPDATE SET last_value = s.last_value`, series); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds (a state to reach, not a timing to
// assert: the deadline only turns a hang into a failure).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never reached: %s", what)
		}
	}
}

type created struct {
	key string
	rec *httptest.ResponseRecorder
}

// createQueued sends a creation for each body at once (a fresh
// Idempotency-Key each) after a first one that holds the lead, blocked on
// the series g holds: every body queues behind it, then the series is
// released and the bodies are written as one group. The first answer is
// the leader's.
func (g *rig) createQueued(t *testing.T, user string, bodies []map[string]any) []created {
	t.Helper()
	release := g.holdSeries(t)
	out := make([]created, len(bodies)+1)
	var wg sync.WaitGroup
	send := func(i int, body map[string]any) {
		defer wg.Done()
		key := uuid.NewString()
		out[i] = created{key, g.call(call{method: "POST", path: "/invoices", body: body, sub: user, role: auth.RoleAdmin, key: key})}
	}
	lead := invoiceBody(user, uuid.NewString())
	lead["auto_finalize"] = true
	wg.Add(1)
	go send(0, lead)
	// The leader has taken its group (itself) and waits for the series.
	waitFor(t, "the leader waits for the series", func() bool {
		var n int
		_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE NOT granted`).Scan(&n)
		return n > 0 && g.s.b.QueuedCreates() == 0
	})
	for i, b := range bodies {
		wg.Add(1)
		go send(i+1, b)
	}
	waitFor(t, "every creation queues behind the leader", func() bool { return g.s.b.QueuedCreates() == len(bodies) })
	release()
	wg.Wait()
	return out
}

// TestConcurrentCreationsCommitTogether: synchronous creations that
// arrive while one is committing are written in one transaction (one
// xmin), numbered without gap, each with its own events and its own
// answer under its own Idempotency-Key.
func TestConcurrentCreationsCommitTogether(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	const n = 8
	bodies := make([]map[string]any, n)
	for i := range bodies {
		bodies[i] = invoiceBody(user, uuid.NewString())
		bodies[i]["auto_finalize"] = true
		bodies[i]["memo"] = "invoice " + string(rune('a'+i))
	}
	out := g.createQueued(t, user, bodies)
	var ids, numbers []string
	for i, c := range out {
		must(t, c.rec, 201)
		inv := decode[invoicing.Invoice](t, c.rec)
		if inv.Status != invoicing.StatusOpen || inv.Number == nil {
			t.Fatalf("answer %d: %s", i, c.rec.Body)
		}
		if i > 0 && inv.Memo != bodies[i-1]["memo"] {
			t.Fatalf("answer %d is another caller's invoice: %s", i, c.rec.Body)
		}
		ids, numbers = append(ids, inv.ID), append(numbers, *inv.Number)
	}
	sort.Strings(numbers)
	for i, got := range numbers {
		if want := invoicing.FormatNumber(g.s.cfg.NumberPrefix, 2026, int64(i+1)); got != want {
			t.Fatalf("numbers %v, want 1..%d without gap", numbers, n+1)
		}
	}
	var txs int
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM invoices WHERE id = ANY($1::uuid[])`,
		ids[1:]).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Fatalf("the %d queued creations were written by %d transactions, want 1", n, txs)
	}
	// The group's events are written together, so signed together: one
	// signature over a tree of all 3 × n of them.
	sigs := map[string]int{}
	for i, id := range ids {
		evs := g.events(id)
		if got := strings.Join(types(evs), " "); got != "invoice.created invoice.finalized notification.requested" {
			t.Fatalf("events of %s: %s", id, got)
		}
		if i == 0 {
			continue // the leader's, committed alone
		}
		for _, ev := range evs {
			sig, _ := ev.Extensions()[events.OriginSigExt].(string)
			path, _ := ev.Extensions()[events.OriginPathExt].(string)
			if sig == "" || !strings.Contains(path, fmt.Sprintf(".%d.", 3*n)) {
				t.Fatalf("%s of %s: originsig %q, originpath %q, want one of a tree of %d", ev.Type(), id, sig, path, 3*n)
			}
			sigs[sig]++
		}
	}
	if len(sigs) != 1 {
		t.Fatalf("the group's %d events carry %d signatures, want 1", 3*n, len(sigs))
	}
	// Each key replays its own answer.
	for i, c := range out[1:3] {
		again := g.call(call{method: "POST", path: "/invoices", body: bodies[i], sub: user, role: auth.RoleAdmin, key: c.key})
		must(t, again, 201)
		if again.Header().Get(idempotency.ReplayedHeader) == "" || again.Body.String() != c.rec.Body.String() {
			t.Fatalf("replay of key %d: %s %s", i, again.Header(), again.Body)
		}
	}
}

// TestAGroupThatFailsRunsEachCreationAlone: two queued creations redeem a
// coupon that has one redemption left; their group fails and commits
// nothing, each creation runs again alone, so exactly one gets the coupon
// and only the other is refused; the rest of the group is created, and
// the numbers have no gap.
func TestAGroupThatFailsRunsEachCreationAlone(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	coupon := "ONCE-" + user[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": coupon, "percent_off": "10", "max_redemptions": 1}), 201)
	bodies := make([]map[string]any, 5)
	for i := range bodies {
		bodies[i] = invoiceBody(user, uuid.NewString())
		bodies[i]["auto_finalize"] = true
	}
	bodies[1]["coupon"], bodies[3]["coupon"] = coupon, coupon
	out := g.createQueued(t, user, bodies)
	var numbers []string
	refused := 0
	for i, c := range out {
		if i == 2 || i == 4 { // bodies 1 and 3
			if c.rec.Code == 422 && strings.Contains(c.rec.Body.String(), string(invoicing.CodeCouponNotRedeemable)) {
				refused++
				continue
			}
		}
		must(t, c.rec, 201)
		numbers = append(numbers, *decode[invoicing.Invoice](t, c.rec).Number)
	}
	if refused != 1 {
		t.Fatalf("%d creations refused the used-up coupon, want 1", refused)
	}
	sort.Strings(numbers)
	for i, got := range numbers {
		if want := invoicing.FormatNumber(g.s.cfg.NumberPrefix, 2026, int64(i+1)); got != want {
			t.Fatalf("numbers %v, want 1..%d without gap", numbers, len(numbers))
		}
	}
	var redeemed int
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT times_redeemed FROM coupons WHERE id = $1`, coupon).Scan(&redeemed); err != nil {
		t.Fatal(err)
	}
	if redeemed != 1 {
		t.Fatalf("times_redeemed = %d, want 1", redeemed)
	}
}
