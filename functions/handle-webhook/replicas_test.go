package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

// newReplica is one handle-webhook process on the package's database (two
// of them in a test are two replicas), its receiver and store on a pool
// whose round trips are counted.
func newReplica(t *testing.T, mutate ...func(*api.Config)) (*rig, *testenv.RoundTrips) {
	t.Helper()
	cfg := testConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	d, kit := testenv.Platform(t, webhooks.Name)
	trips := &testenv.RoundTrips{}
	pc := d.Pool.Config()
	pc.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	// The function on a copy of its dependencies with the counted pool
	// (d itself closes the rest, its own pool included).
	counted := *d
	counted.Pool = pool
	d.Events.Pool = pool
	c := testenv.NewClock(time.Now())
	s, err := api.New(&counted, cfg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before d's closers (cleanups run newest first)
		s.Interests().Close()
		pool.Close()
	})
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, counted.App(s.Routes())).Handler()
	return &rig{t: t, s: s, d: &counted, kit: kit, h: h, clock: c, admin: uuid.NewString()}, trips
}

// tripsOf is how many round trips a delivery of evs made.
func tripsOf(g *rig, trips *testenv.RoundTrips, evs ...events.Event) (int, []string) {
	g.t.Helper()
	n0, _ := trips.Count()
	g.deliverOK(evs...)
	n, sql := trips.Count()
	return n - n0, sql[n0:]
}

// An event no endpoint subscribes to, of a payment already known, is
// acknowledged without a round trip to PostgreSQL once the replica holds
// the endpoints (its listener connected) and has read that the payment
// is known; the first reads are as before.
func TestAnUnwantedDeliveryMakesNoRoundTrip(t *testing.T) {
	newReceiver(t, nil) // no endpoint
	g, trips := newReplica(t)
	ctx := context.Background()
	pid := uuid.NewString()
	pay := func(typ string) events.Event {
		return events.Must(events.New(ctx, "capture-payment", typ, pid, map[string]any{"payment_id": pid, "status": "succeeded",
			"amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_r_" + pid[:8]}))
	}
	g.deliverOK(pay(events.TypePaymentCreated)) // teaches the payment: a transaction
	// The listener loads the endpoints in the background: poll until a
	// delivery of an unwanted fact goes without a read (none on main).
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, sql := tripsOf(g, trips, fact(t, events.TypeTransactionPosted))
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a transaction.posted nobody wants still makes %d round trips: %q", n, sql)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The payment's later events: the first reads that it is known, the
	// rest are answered from memory, alone or in a batch with facts.
	tripsOf(g, trips, pay(events.TypePaymentAuthorized))
	for _, evs := range [][]events.Event{
		{pay(events.TypePaymentCaptured)},
		{pay(events.TypePaymentCaptured), fact(t, events.TypeTransactionPosted), fact(t, events.TypeInvoicePaid)},
	} {
		if n, sql := tripsOf(g, trips, evs...); n != 0 {
			t.Fatalf("%d events that change nothing: %d round trips: %q", len(evs), n, sql)
		}
	}
}

// heard waits until replica g has loaded the endpoints once and uses its
// copy.
func heard(g *rig) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !g.s.Interests().Cached() {
		if time.Now().After(deadline) {
			g.t.Fatalf("the replica never loaded the endpoints (version %d)", g.s.Interests().Version())
		}
		time.Sleep(time.Millisecond)
	}
}

// heardOf waits until replica g's copy of the endpoints says, without a
// read, that events of type typ are wanted (want) or not: a change made
// elsewhere (another replica, SQL) is then in it. Its version moving is
// not enough: a load begun before the change may be installed after.
func heardOf(g *rig, typ string, want bool) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if wants, cached := g.s.Interests().Wants(typ); cached && wants == want {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("the replica never heard that %s is wanted: %v", typ, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// Two replicas: an endpoint created through A is used by B once B's
// listener heard of it (no read on B's side: from its copy), and B stops
// queuing for it once it heard it was disabled.
func TestReplicasHearOfEndpointChanges(t *testing.T) {
	rc := newReceiver(t, nil)
	a, _ := newReplica(t)
	b, bTrips := newReplica(t)
	heard(b)

	e := a.endpoint(rc.srv.URL, events.TypeTransactionPosted)
	heardOf(b, events.TypeTransactionPosted, true)
	posted := fact(t, events.TypeTransactionPosted)
	b.deliverOK(posted)
	if n := b.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2`, e.ID, posted.ID()); n != 1 {
		t.Fatalf("replica B queued %d deliveries for the endpoint A created", n)
	}
	// A type the endpoint does not subscribe to: still no read on B.
	if n, sql := tripsOf(b, bTrips, fact(t, events.TypeInvoicePaid)); n != 0 {
		t.Fatalf("an unsubscribed type on B: %d round trips: %q", n, sql)
	}

	if rec := a.admin_("PATCH", "/endpoints/"+e.ID, map[string]any{"disabled": true}, auth.RoleAdmin, ""); rec.Code != http.StatusOK {
		t.Fatalf("disable: %d %s", rec.Code, rec.Body)
	}
	heardOf(b, events.TypeTransactionPosted, false)
	later := fact(t, events.TypeTransactionPosted)
	if n, sql := tripsOf(b, bTrips, later); n != 0 {
		t.Fatalf("after the endpoint was disabled, B made %d round trips: %q", n, sql)
	}
	if n := b.count(`SELECT count(*) FROM webhook_deliveries WHERE event_id = $1`, later.ID()); n != 0 {
		t.Fatalf("replica B queued %d deliveries for a disabled endpoint", n)
	}
}

// B's listener killed (pg_terminate_backend): B reads the endpoints at
// each delivery and so still sees an endpoint A creates meanwhile, then
// reconnects, loads again and answers from memory.
func TestAReplicaWithoutItsListenerReads(t *testing.T) {
	rc := newReceiver(t, nil)
	a, _ := newReplica(t)
	// B waits long before reconnecting: the test sees it without listener.
	b, bTrips := newReplica(t, func(c *api.Config) { c.EndpointsRetry = config.Duration(3 * time.Second) })
	heard(b)
	pid := b.s.Interests().ListenerPID()
	if _, err := a.d.Pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.s.Interests().Cached() {
		if time.Now().After(deadline) {
			t.Fatal("B still uses its copy with its listener killed")
		}
		time.Sleep(time.Millisecond)
	}
	e := a.endpoint(rc.srv.URL, events.TypeTransactionPosted)
	posted := fact(t, events.TypeTransactionPosted)
	v := b.s.Interests().Version()
	n, _ := tripsOf(b, bTrips, posted)
	if b.s.Interests().Version() == v && n == 0 {
		t.Fatal("B, without listener, answered without reading")
	}
	if n := b.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2`, e.ID, posted.ID()); n != 1 {
		t.Fatalf("replica B without listener queued %d deliveries, want 1", n)
	}

	// Back: a new listener, the endpoints loaded again, no read.
	deadline = time.Now().Add(20 * time.Second)
	for p := b.s.Interests().ListenerPID(); p == 0 || p == pid || !b.s.Interests().Cached(); p = b.s.Interests().ListenerPID() {
		if time.Now().After(deadline) {
			t.Fatal("B's listener never came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, sql := tripsOf(b, bTrips, fact(t, events.TypeInvoicePaid)); n != 0 {
		t.Fatalf("B after recovery: %d round trips: %q", n, sql)
	}
	again := fact(t, events.TypeTransactionPosted)
	b.deliverOK(again)
	if n := b.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2`, e.ID, again.ID()); n != 1 {
		t.Fatalf("replica B after recovery queued %d deliveries, want 1", n)
	}
}
