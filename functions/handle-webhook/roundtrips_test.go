package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/sandbox"
	"github.com/billfn/billfn/shared/testenv"
)

// succeededIntent is a replica whose outbox keeps what its deliveries
// write (keepOutbox; emptied when the test ends) and the sandbox's
// payment_intent.succeeded for a new payment pid, whose metadata teaches
// it: gateway object "pi_<tag>_<n>".
func succeededIntent(t *testing.T, tag string) (g *rig, trips *testenv.RoundTrips, pid, n string, body []byte) {
	t.Helper()
	g, trips = newReplica(t)
	g.keepOutbox()
	heard(g)
	t.Cleanup(func() { _, _ = g.d.Pool.Exec(context.Background(), `DELETE FROM outbox`) })
	pid, n = uuid.NewString(), uuid.NewString()[:8]
	body, err := sandbox.NewEvent("evt_"+tag+"_"+n, "payment_intent.succeeded", g.clock.Now(), sandbox.PaymentIntent{ID: "pi_" + tag + "_" + n,
		Object: "payment_intent", Amount: 700, AmountReceived: 700, Currency: "eur", Status: "succeeded",
		Metadata: map[string]string{sandbox.MetadataPaymentID: pid}})
	if err != nil {
		t.Fatal(err)
	}
	return g, trips, pid, n, body
}

// incomingTrips is how many round trips the store made for one incoming
// webhook (the replica's listener loading the endpoints in the background
// left out), and their statements.
func incomingTrips(t *testing.T, g *rig, trips *testenv.RoundTrips, body []byte, want string) (int, []string) {
	t.Helper()
	n0, _ := trips.Count()
	if got := outcome(t, g.sandbox(body)); got != want {
		t.Fatalf("outcome %s, want %s", got, want)
	}
	_, all := trips.Count()
	var mine []string
	for _, sql := range all[n0:] {
		if !strings.HasPrefix(sql, "SELECT events FROM webhook_endpoints") && !strings.HasPrefix(sql, "LISTEN") {
			mine = append(mine, sql)
		}
	}
	return len(mine), mine
}

// A verified delivery of a known payment is stored, teaches its payment
// and writes its normalized event in one round trip to PostgreSQL (BEGIN,
// one statement, COMMIT, pipelined), and a redelivery, which writes
// nothing, in one too; the event is in the outbox once.
func TestAnIncomingWebhookIsOneRoundTrip(t *testing.T) {
	g, trips, pid, n, body := succeededIntent(t, "rt")
	if n, sql := incomingTrips(t, g, trips, body, webhooks.Processed); n != 1 || !strings.Contains(sql[0], "COMMIT") {
		t.Fatalf("a new delivery: %d round trips, want 1 holding the commit: %q", n, sql)
	}
	if n, sql := incomingTrips(t, g, trips, body, webhooks.Duplicate); n != 1 {
		t.Fatalf("a redelivery: %d round trips, want 1: %q", n, sql)
	}
	if c := g.count(`SELECT count(*) FROM outbox WHERE source = $1 AND key = $2`, webhooks.Name, pid); c != 1 {
		t.Fatalf("%d outbox rows for the delivery and its redelivery, want 1", c)
	}
	if c := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway = 'sandbox' AND gateway_payment_id = $1 AND payment_id = $2`,
		"pi_rt_"+n, pid); c != 1 {
		t.Fatal("the delivery's metadata taught nothing")
	}
}

// A payment's first event teaches the map in one statement of the
// delivery's transaction, which also says whether webhooks are parked on
// it (there: none), instead of an insert and then a look for parked ones.
// (Pipelined after postgres.GenericPlans, in the same round trip: see
// store's TestLearnIsPlannedOncePerConnection.)
func TestAPaymentsFirstEventLearnsInOneStatement(t *testing.T) {
	g, trips := newReplica(t)
	heard(g)
	pid := uuid.NewString()
	ev := events.Must(events.New(context.Background(), "capture-payment", events.TypePaymentCreated, pid, map[string]any{
		"payment_id": pid, "status": "pending", "amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_l_" + pid[:8]}))
	_, sqls := tripsOf(g, trips, ev)
	var learning []string
	for _, sql := range sqls {
		sql = strings.TrimPrefix(sql, "batch: "+postgres.GenericPlans+"; ")
		// Wanted's read of the map (outside the transaction) left out.
		if !strings.HasPrefix(sql, "batch:") && !strings.HasPrefix(sql, "SELECT gateway, gateway_payment_id FROM webhook_payment_refs") &&
			(strings.Contains(sql, "webhook_payment_refs") || strings.Contains(sql, "webhook_events")) {
			learning = append(learning, sql)
		}
	}
	if len(learning) != 1 {
		t.Fatalf("learning the payment took %d statements, want 1: %q", len(learning), learning)
	}
	if c := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway = 'sandbox' AND gateway_payment_id = $1 AND payment_id = $2`,
		"pi_l_"+pid[:8], pid); c != 1 {
		t.Fatal("the payment's event taught nothing")
	}
}

// A webhook whose metadata taught its payment makes the replica know the
// gateway object once committed: capture-payment's later event naming it
// changes nothing here and is ignored without reading the map.
func TestAPaymentTaughtByAWebhookIsKnownWithoutARead(t *testing.T) {
	g, trips, pid, n, body := succeededIntent(t, "k")
	if got := outcome(t, g.sandbox(body)); got != webhooks.Processed {
		t.Fatalf("outcome %s", got)
	}
	ev := events.Must(events.New(context.Background(), "capture-payment", events.TypePaymentCaptured, pid, map[string]any{
		"payment_id": pid, "status": "succeeded", "amount": 700, "currency": "EUR", "gateway": "sandbox", "gateway_payment_id": "pi_k_" + n}))
	if n, sql := tripsOf(g, trips, ev); n != 0 {
		t.Fatalf("an event of a payment a webhook taught: %d round trips: %q", n, sql)
	}
}

// A payment's first event is wanted for teaching the map, not for an
// endpoint: when the replica's copy of the endpoints (its listener
// connected) says none subscribes to its type, its transaction does not
// read the endpoints to queue nothing (one round trip less for each
// payment: issue 20).
func TestATeachingEventNoEndpointWantsReadsNoEndpoint(t *testing.T) {
	newReceiver(t, nil) // no endpoint
	g, trips := newReplica(t)
	heard(g)
	pid := uuid.NewString()
	ev := events.Must(events.New(context.Background(), "capture-payment", events.TypePaymentCreated, pid, map[string]any{
		"payment_id": pid, "status": "pending", "amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_e_" + pid[:8]}))
	_, sqls := tripsOf(g, trips, ev)
	for _, sql := range sqls {
		if strings.Contains(sql, "id::text, events FROM webhook_endpoints") {
			t.Fatalf("the transaction read the endpoints no one of which subscribes: %q", sqls)
		}
	}
	if c := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway = 'sandbox' AND gateway_payment_id = $1 AND payment_id = $2`,
		"pi_e_"+pid[:8], pid); c != 1 {
		t.Fatal("the payment's event taught nothing")
	}
}

// A payment's billfn.payment.created is the first event to name its
// gateway object: the map cannot have learned it from capture-payment
// yet, so reading the map about it (outside any transaction, a read-only
// commit) finds nothing on every payment. It is wanted without that read,
// and its delivery makes no round trip before its transaction (the
// statement that learns in it ignores a reference the map already holds).
func TestAPaymentCreatedIsLearnedWithoutReadingTheMapFirst(t *testing.T) {
	newReceiver(t, nil) // no endpoint
	g, trips := newReplica(t)
	heard(g)
	pid := uuid.NewString()
	ev := events.Must(events.New(context.Background(), "capture-payment", events.TypePaymentCreated, pid, map[string]any{
		"payment_id": pid, "status": "pending", "amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_c_" + pid[:8]}))
	if _, sqls := tripsOf(g, trips, ev); len(sqls) == 0 || sqls[0] != "begin" {
		t.Fatalf("a payment.created: round trips before its transaction: %q", sqls)
	}
	if c := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway = 'sandbox' AND gateway_payment_id = $1 AND payment_id = $2`,
		"pi_c_"+pid[:8], pid); c != 1 {
		t.Fatal("the payment's event taught nothing")
	}
	// Its next event reads that the map holds it, once, and is ignored.
	next := events.Must(events.New(context.Background(), "capture-payment", events.TypePaymentCaptured, pid, map[string]any{
		"payment_id": pid, "status": "succeeded", "amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_c_" + pid[:8]}))
	if n, sqls := tripsOf(g, trips, next); n != 1 || !strings.HasPrefix(sqls[0], "SELECT gateway, gateway_payment_id FROM webhook_payment_refs") {
		t.Fatalf("the payment's next event: %d round trips, want its one read: %q", n, sqls)
	}
}

// A webhook about a payment this replica knows the map holds (a gateway
// confirming again: the webhooks benchmark's every delivery) stores its
// delivery and its event without the map's CTE: the statement does not
// try to insert the reference again nor count the parked deliveries of a
// payment known before (none wait: they were released when it was
// learned).
func TestAWebhookOfAKnownPaymentDoesNotTeachItAgain(t *testing.T) {
	g, trips, pid, n, body := succeededIntent(t, "kn")
	if got := outcome(t, g.sandbox(body)); got != webhooks.Processed {
		t.Fatalf("outcome %s", got)
	}
	again, err := sandbox.NewEvent("evt_kn2_"+n, "payment_intent.succeeded", g.clock.Now(), sandbox.PaymentIntent{ID: "pi_kn_" + n,
		Object: "payment_intent", Amount: 700, AmountReceived: 700, Currency: "eur", Status: "succeeded",
		Metadata: map[string]string{sandbox.MetadataPaymentID: pid}})
	if err != nil {
		t.Fatal(err)
	}
	_, sqls := incomingTrips(t, g, trips, again, webhooks.Processed)
	if len(sqls) != 1 || strings.Contains(sqls[0], "webhook_payment_refs") {
		t.Fatalf("a webhook of a known payment: %q, want one round trip that leaves the map alone", sqls)
	}
	if c := g.count(`SELECT count(*) FROM outbox WHERE source = $1 AND key = $2`, webhooks.Name, pid); c != 2 {
		t.Fatalf("%d outbox rows for two deliveries, want 2", c)
	}
}
