package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v83/webhook"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/sandbox"
	"github.com/billfn/billfn/shared/testenv"
)

func TestStripeWebhookSignedByStripeGoIsStoredAndEmitted(t *testing.T) {
	g := newRig(t)
	pid := uuid.NewString()
	gp := "pi_1A_" + uuid.NewString()[:8] // a gateway object of this run only: the database outlives it
	body := stripeEvent("payment_intent.succeeded", paymentIntent(gp, pid, "succeeded", 1050))
	if got := outcome(t, g.stripe(body)); got != webhooks.Processed {
		t.Fatalf("outcome %s", got)
	}
	var stored []byte
	var status string
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT body, status FROM webhook_events WHERE gateway_event_id = $1`,
		eventID(body)).Scan(&stored, &status); err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(body) || status != webhooks.Processed {
		t.Fatalf("stored %q (%s), not the raw body", stored, status)
	}
	evs := g.updates(g.kit.Brokers, 1, nil)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	var u events.GatewayUpdate
	_ = json.Unmarshal(ev.Data(), &u)
	if u.Gateway != webhooks.Stripe || u.GatewayEventID != eventID(body) || u.Status != "succeeded" || *u.PaymentID != pid ||
		u.GatewayPaymentID != gp || u.AmountReceived != 1050 || u.Currency != "USD" || u.ObjectType != "payment_intent" {
		t.Fatalf("normalized %s", ev.Data())
	}
	if want := uuid.NewSHA1(updateNS, []byte("stripe:"+eventID(body))).String(); ev.ID() != want || ev.Subject() != pid ||
		ev.Source() != "/functions/handle-webhook" {
		t.Fatalf("event id %s subject %s source %s", ev.ID(), ev.Subject(), ev.Source())
	}
}

func TestStripeSignatureIsCheckedExactly(t *testing.T) {
	g := newRig(t, func(c *api.Config) { c.StripeSecrets = "whsec_old_secret, " + stripeSecret })
	now := g.clock.Now()
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	body := func() []byte {
		return stripeEvent("payment_intent.succeeded", paymentIntent("pi_sig_"+uniq, uuid.NewString(), "succeeded", 100))
	}
	valid := func(b []byte) string { return signStripe(b, stripeSecret, now) }
	cases := []struct {
		name   string
		header func(b []byte) string
		tamper bool
		status int
		code   string
	}{
		{"signed by stripe-go", valid, false, 200, ""},
		{"signed with the older secret during rotation", func(b []byte) string { return signStripe(b, "whsec_old_secret", now) }, false, 200, ""},
		{"several v1, one valid", func(b []byte) string {
			h := valid(b)
			return h[:strings.Index(h, ",")] + ",v1=" + strings.Repeat("ab", 32) + h[strings.Index(h, ","):] + ",v0=deadbeef"
		}, false, 200, ""},
		{"tampered body", valid, true, 401, string(webhooks.CodeSignatureInvalid)},
		{"wrong secret", func(b []byte) string { return signStripe(b, "whsec_someone_else", now) }, false, 401, string(webhooks.CodeSignatureInvalid)},
		{"expired timestamp", func(b []byte) string { return signStripe(b, stripeSecret, now.Add(-301*time.Second)) }, false, 401, string(webhooks.CodeTimestamp)},
		{"future timestamp", func(b []byte) string { return signStripe(b, stripeSecret, now.Add(301*time.Second)) }, false, 401, string(webhooks.CodeTimestamp)},
		{"missing header", func([]byte) string { return "" }, false, 401, string(webhooks.CodeSignatureMissing)},
		{"malformed header", func([]byte) string { return "garbage" }, false, 400, string(webhooks.CodeSignatureMalformed)},
		{"no v1", func([]byte) string { return "t=" + strconv.FormatInt(now.Unix(), 10) }, false, 400, string(webhooks.CodeSignatureMalformed)},
		{"timestamp not a number", func(b []byte) string {
			return "t=soon,v1=" + hex.EncodeToString(webhook.ComputeSignature(now, b, stripeSecret))
		}, false, 400, string(webhooks.CodeSignatureMalformed)},
		{"v1 not hex", func([]byte) string { return "t=" + strconv.FormatInt(now.Unix(), 10) + ",v1=zz" }, false, 401, string(webhooks.CodeSignatureInvalid)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body()
			h := c.header(b)
			if c.tamper {
				b = []byte(strings.Replace(string(b), `"amount":100`, `"amount":999`, 1))
			}
			before := g.count(`SELECT count(*) FROM webhook_events`)
			rec := g.post("/stripe", b, map[string]string{webhooks.StripeSignatureHeader: h})
			if c.status == 200 {
				if got := outcome(t, rec); got != webhooks.Processed {
					t.Fatalf("outcome %s", got)
				}
				return
			}
			if code := problemCode(t, rec, c.status); code != c.code {
				t.Fatalf("code %s, want %s", code, c.code)
			}
			if after := g.count(`SELECT count(*) FROM webhook_events`); after != before {
				t.Fatal("a rejected delivery was stored")
			}
		})
	}
	// Rejections leave a counter, nothing else.
	rec := g.admin_("GET", "/metrics", nil, "", "")
	if !strings.Contains(rec.Body.String(), `billfn_webhooks_total{gateway="stripe",outcome="rejected_webhook_signature_invalid"}`) {
		t.Fatalf("no rejection counter in /metrics")
	}
}

func TestSandboxWebhooksAreVerifiedWithTheSharedScheme(t *testing.T) {
	g := newRig(t, func(c *api.Config) { c.SandboxSecrets = "sandbox-next," + sandboxSecret })
	pid, n := uuid.NewString(), uuid.NewString()[:8]
	body, err := sandbox.NewEvent("evt_sbx_1"+n, "payment_intent.amount_capturable_updated", g.clock.Now(),
		sandbox.PaymentIntent{ID: "pi_sbx_1" + n, Object: "payment_intent", Amount: 700, AmountCapturable: 700, Currency: "eur",
			Status: "requires_capture", Metadata: map[string]string{sandbox.MetadataPaymentID: pid}})
	if err != nil {
		t.Fatal(err)
	}
	if got := outcome(t, g.sandbox(body)); got != webhooks.Processed {
		t.Fatalf("outcome %s", got)
	}
	other, _ := sandbox.NewEvent("evt_sbx_2"+n, "payment_intent.succeeded", g.clock.Now(), sandbox.PaymentIntent{ID: "pi_sbx_1" + n,
		Object: "payment_intent", Amount: 700, AmountReceived: 700, Currency: "eur", Status: "succeeded",
		Metadata: map[string]string{sandbox.MetadataPaymentID: pid}})
	rotated := g.post("/sandbox", other, map[string]string{sandbox.SignatureHeader: sandbox.Sign([]byte("sandbox-next"), g.clock.Now(), other)})
	if got := outcome(t, rotated); got != webhooks.Processed {
		t.Fatalf("rotated secret: %s", got)
	}
	for name, h := range map[string]string{
		"wrong secret":            sandbox.Sign([]byte("nope"), g.clock.Now(), body),
		"stale":                   sandbox.Sign([]byte(sandboxSecret), g.clock.Now().Add(-10*time.Minute), body),
		"stripe's header instead": "",
	} {
		hdr := map[string]string{sandbox.SignatureHeader: h}
		if h == "" {
			hdr = map[string]string{webhooks.StripeSignatureHeader: signStripe(body, sandboxSecret, g.clock.Now())}
		}
		if rec := g.post("/sandbox", body, hdr); rec.Code != 401 {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	evs := g.updates(g.kit.Brokers, 2, nil)
	var u events.GatewayUpdate
	_ = json.Unmarshal(evs[0].Data(), &u)
	if len(evs) != 2 || u.Gateway != webhooks.Sandbox || u.Status != "requires_capture" || u.AmountCapturable != 700 || u.Currency != "EUR" {
		t.Fatalf("%d events, first %s", len(evs), evs[0].Data())
	}
}

func TestRedeliveriesAndConcurrentDuplicatesAreStoredOnce(t *testing.T) {
	g := newRig(t)
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_dup_"+uniq, uuid.NewString(), "succeeded", 300))
	if got := outcome(t, g.stripe(body)); got != webhooks.Processed {
		t.Fatal(got)
	}
	if got := outcome(t, g.stripe(body)); got != webhooks.Duplicate {
		t.Fatalf("redelivery: %s", got)
	}
	fresh := stripeEvent("payment_intent.succeeded", paymentIntent("pi_dup2_"+uniq, uuid.NewString(), "succeeded", 300))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		outcomes = map[string]int{}
	)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := g.stripe(fresh)
			mu.Lock()
			defer mu.Unlock()
			if rec.Code != 200 {
				outcomes[strconv.Itoa(rec.Code)+rec.Body.String()]++
				return
			}
			var r struct{ Status string }
			_ = json.Unmarshal(rec.Body.Bytes(), &r)
			outcomes[r.Status]++
		}()
	}
	wg.Wait()
	if outcomes[webhooks.Processed] != 1 || outcomes[webhooks.Duplicate] != 99 {
		t.Fatalf("outcomes %v, want one processed and 99 duplicates", outcomes)
	}
	if n := g.count(`SELECT count(*) FROM webhook_events WHERE gateway_event_id = $1`, eventID(fresh)); n != 1 {
		t.Fatalf("%d rows", n)
	}
	// One outgoing event: everything published, exactly one record of it.
	evs := g.updates(g.kit.Brokers, 3, nil)
	n := 0
	for _, ev := range evs {
		var u events.GatewayUpdate
		_ = json.Unmarshal(ev.Data(), &u)
		if u.GatewayEventID == eventID(fresh) {
			n++
		}
	}
	if len(evs) != 2 || n != 1 {
		t.Fatalf("%d events, %d for the concurrent one", len(evs), n)
	}
}

func TestEveryHandledStripeTypeNormalizes(t *testing.T) {
	g := newRig(t)
	pid := uuid.NewString()
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	piN, chN, reN := "pi_n_"+uniq, "ch_n_"+uniq, "re_n_"+uniq
	failed := paymentIntent(piN, pid, "requires_payment_method", 900)
	failed["last_payment_error"] = map[string]any{"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}
	cases := []struct {
		typ    string
		object map[string]any
		check  func(u events.GatewayUpdate) bool
	}{
		{"payment_intent.succeeded", paymentIntent(piN, pid, "succeeded", 900), func(u events.GatewayUpdate) bool { return u.Status == "succeeded" && u.AmountReceived == 900 }},
		{"payment_intent.payment_failed", failed, func(u events.GatewayUpdate) bool {
			return u.Status == "failed" && *u.FailureCode == "card_declined" && *u.DeclineCode == "insufficient_funds"
		}},
		{"payment_intent.canceled", paymentIntent(piN, pid, "canceled", 900), func(u events.GatewayUpdate) bool { return u.Status == "canceled" }},
		{"payment_intent.amount_capturable_updated", paymentIntent(piN, pid, "requires_capture", 900), func(u events.GatewayUpdate) bool {
			return u.Status == "requires_capture" && u.AmountCapturable == 900
		}},
		{"charge.refunded", map[string]any{"id": chN, "object": "charge", "amount": 900, "amount_captured": 900, "amount_refunded": 400,
			"currency": "usd", "payment_intent": piN, "refunded": false, "status": "succeeded", "metadata": map[string]any{}},
			func(u events.GatewayUpdate) bool {
				return u.Status == "refunded" && u.ObjectType == "charge" && u.AmountRefunded == 400 && u.GatewayPaymentID == piN && *u.PaymentID == pid
			}},
		{"charge.refund.updated", map[string]any{"id": reN, "object": "refund", "amount": 400, "currency": "usd", "status": "succeeded",
			"payment_intent": piN, "charge": chN, "metadata": map[string]any{"billfn_payment_id": pid, "billfn_refund_id": "r-1"}},
			func(u events.GatewayUpdate) bool {
				return u.Status == "refunded" && *u.RefundID == reN && *u.RefundStatus == "succeeded" && u.RefundAmount == 400 && *u.BillfnRefundID == "r-1"
			}},
		// A refund that fails after it succeeded (the card was closed):
		// Stripe's charge.refund.updated with status failed and its reason.
		{"charge.refund.updated", map[string]any{"id": reN + "_late", "object": "refund", "amount": 400, "currency": "usd", "status": "failed",
			"failure_reason": "expired_or_canceled_card", "payment_intent": piN, "charge": chN,
			"metadata": map[string]any{"billfn_payment_id": pid, "billfn_refund_id": "r-2"}},
			func(u events.GatewayUpdate) bool {
				return u.Status == "failed" && *u.RefundStatus == "failed" && *u.FailureCode == "expired_or_canceled_card" &&
					u.RefundAmount == 400 && *u.BillfnRefundID == "r-2"
			}},
		{"charge.dispute.created", map[string]any{"id": "dp_n_" + uniq, "object": "dispute", "amount": 900, "currency": "usd", "status": "needs_response",
			"reason": "fraudulent", "charge": chN, "payment_intent": map[string]any{"id": piN, "object": "payment_intent"}},
			func(u events.GatewayUpdate) bool {
				return u.Status == "disputed" && u.ObjectType == "dispute" && u.GatewayPaymentID == piN && *u.PaymentID == pid
			}},
	}
	for _, c := range cases {
		body := stripeEvent(c.typ, c.object)
		if got := outcome(t, g.stripe(body)); got != webhooks.Processed {
			t.Fatalf("%s: %s", c.typ, got)
		}
		evs := g.updates(g.kit.Brokers, 1, func(_ events.Event, u events.GatewayUpdate) bool { return u.GatewayEventID == eventID(body) })
		if len(evs) != 1 {
			t.Fatalf("%s: no event", c.typ)
		}
		var u events.GatewayUpdate
		_ = json.Unmarshal(evs[0].Data(), &u)
		if !c.check(u) || u.GatewayEventType != c.typ || u.Gateway != webhooks.Stripe || u.OccurredAt.IsZero() {
			t.Fatalf("%s normalized to %s", c.typ, evs[0].Data())
		}
	}
	// Other types are stored and acknowledged, nothing more.
	body := stripeEvent("customer.created", map[string]any{"id": "cus_1_" + uniq, "object": "customer"})
	if got := outcome(t, g.stripe(body)); got != webhooks.Ignored {
		t.Fatalf("customer.created: %s", got)
	}
}

func TestUnknownPaymentIsParkedThenMatched(t *testing.T) {
	g := newRig(t)
	pid := uuid.NewString()
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	piParked, piLater := "pi_parked_"+uniq, "pi_later_"+uniq
	refund := stripeEvent("charge.refunded", map[string]any{"id": "ch_p_" + uniq, "object": "charge", "amount": 500, "amount_captured": 500,
		"amount_refunded": 500, "currency": "usd", "payment_intent": piParked, "metadata": map[string]any{}})
	if got := outcome(t, g.stripe(refund)); got != webhooks.Parked {
		t.Fatalf("outcome %s", got)
	}
	if got := outcome(t, g.stripe(refund)); got != webhooks.Duplicate {
		t.Fatalf("redelivery of a parked event: %s", got)
	}
	if n := g.count(`SELECT count(*) FROM outbox WHERE source = $1`, webhooks.Name); n != 0 {
		t.Fatalf("a parked webhook emitted %d events", n)
	}
	// capture-payment says which payment piParked is.
	ev, _ := events.New(context.Background(), "capture-payment", "billfn.payment.captured", pid, map[string]any{
		"payment_id": pid, "gateway": "stripe", "gateway_payment_id": piParked, "status": "succeeded", "amount": 500, "currency": "USD"})
	if rec := g.deliver(ev); rec.Code != 200 {
		t.Fatalf("payment event: %d %s", rec.Code, rec.Body)
	}
	evs := g.updates(g.kit.Brokers, 1, nil)
	var u events.GatewayUpdate
	_ = json.Unmarshal(evs[0].Data(), &u)
	if len(evs) != 1 || *u.PaymentID != pid || u.Status != "refunded" || u.GatewayEventID != eventID(refund) {
		t.Fatalf("unparked %s", evs[0].Data())
	}
	if n := g.count(`SELECT count(*) FROM webhook_events WHERE gateway_event_id = $1 AND status = 'processed' AND payment_id = $2`,
		eventID(refund), pid); n != 1 {
		t.Fatal("the parked row is not processed")
	}
	// Learning from a webhook's own metadata releases parked ones too.
	pid2 := uuid.NewString()
	early := stripeEvent("charge.refunded", map[string]any{"id": "ch_q_" + uniq, "object": "charge", "amount": 500, "amount_refunded": 100,
		"currency": "usd", "payment_intent": piLater})
	if got := outcome(t, g.stripe(early)); got != webhooks.Parked {
		t.Fatal(got)
	}
	if got := outcome(t, g.stripe(stripeEvent("payment_intent.succeeded", paymentIntent(piLater, pid2, "succeeded", 500)))); got != webhooks.Processed {
		t.Fatal(got)
	}
	evs = g.updates(g.kit.Brokers, 1, func(_ events.Event, u events.GatewayUpdate) bool { return u.GatewayEventID == eventID(early) })
	if len(evs) != 1 {
		t.Fatal("the early refund was not released by the metadata")
	}
}

func TestABatchOfPaymentEventsLearnsEveryPaymentAndReleasesParkedWebhooks(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	pid1, pid2, pid3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	gp1, gp2, gp3 := "pi_b1_"+pid1[:8], "pi_b2_"+pid2[:8], "pi_b3_"+pid3[:8]
	parked := stripeEvent("charge.refunded", map[string]any{"id": "ch_b2_" + pid2[:8], "object": "charge", "amount": 700, "amount_captured": 700,
		"amount_refunded": 700, "currency": "usd", "payment_intent": gp2, "metadata": map[string]any{}})
	if got := outcome(t, g.stripe(parked)); got != webhooks.Parked {
		t.Fatalf("outcome %s", got)
	}
	pay := func(typ, pid string, fields map[string]any) events.Event {
		data := map[string]any{"payment_id": pid, "status": "succeeded", "amount": 700, "currency": "USD"}
		for k, v := range fields {
			data[k] = v
		}
		return events.Must(events.New(ctx, "capture-payment", typ, pid, data))
	}
	created1 := pay("billfn.payment.created", pid1, map[string]any{"gateway": "stripe", "gateway_payment_id": gp1})
	batch := []events.Event{
		created1,
		pay("billfn.payment.captured", pid1, map[string]any{"gateway": "stripe", "gateway_payment_id": gp1}), // the same reference again
		pay("billfn.payment.created", pid3, nil), // not at a gateway yet
		pay("billfn.payment.captured", pid2, map[string]any{"gateway": "stripe", "gateway_payment_id": gp2}),
		created1, // the same event twice in one batch
		pay("billfn.payment.authorized", pid3, map[string]any{"gateway": "sandbox", "gateway_payment_id": gp3}),
	}
	if rec := g.deliver(batch...); rec.Code != 200 {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	for gp, pid := range map[string]string{gp1: pid1, gp2: pid2, gp3: pid3} {
		if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = $1 AND payment_id = $2`, gp, pid); n != 1 {
			t.Errorf("%s → %s learned %d times", gp, pid, n)
		}
	}
	// Recorded as processed: the three events that taught a reference; the
	// second naming gp1 and the one naming no gateway object changed
	// nothing (no endpoint subscribes) and left no row.
	if n := g.count(`SELECT count(*) FROM processed_events WHERE consumer = $1 AND id = ANY($2)`, webhooks.Name,
		[]string{batch[0].ID(), batch[3].ID(), batch[5].ID()}); n != 3 {
		t.Errorf("%d of the batch's 3 teaching events recorded as processed", n)
	}
	if n := g.count(`SELECT count(*) FROM processed_events WHERE consumer = $1 AND id = ANY($2)`, webhooks.Name,
		[]string{batch[1].ID(), batch[2].ID()}); n != 0 {
		t.Errorf("%d of the batch's events that teach nothing recorded as processed", n)
	}
	evs := g.updates(g.kit.Brokers, 1, func(_ events.Event, u events.GatewayUpdate) bool { return u.GatewayEventID == eventID(parked) })
	if len(evs) != 1 {
		t.Fatalf("the webhook parked on %s was released %d times", gp2, len(evs))
	}
	if n := g.count(`SELECT count(*) FROM webhook_events WHERE gateway_event_id = $1 AND status = 'processed' AND payment_id = $2`,
		eventID(parked), pid2); n != 1 {
		t.Fatal("the parked row is not processed")
	}
	// Redelivered, the batch changes nothing.
	if rec := g.deliver(batch...); rec.Code != 200 {
		t.Fatalf("redelivery: %d %s", rec.Code, rec.Body)
	}
	if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = ANY($1)`, []string{gp1, gp2, gp3}); n != 3 {
		t.Fatalf("%d references after a redelivery", n)
	}

	// A poison event does not hold back the rest of its batch: it is parked
	// alone and the others are learned.
	pid4 := uuid.NewString()
	gp4 := "pi_b4_" + pid4[:8]
	gpPoison := "pi_poison_" + pid4[:8]
	poison := events.Must(events.New(ctx, "capture-payment", "billfn.payment.captured", "x", map[string]any{
		"payment_id": "not-a-uuid", "gateway": "stripe", "gateway_payment_id": gpPoison}))
	if rec := g.deliver(poison, pay("billfn.payment.captured", pid4, map[string]any{"gateway": "stripe", "gateway_payment_id": gp4})); rec.Code != 200 {
		t.Fatalf("batch with a poison event: %d %s", rec.Code, rec.Body)
	}
	if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = $1 AND payment_id = $2`, gp4, pid4); n != 1 {
		t.Error("the good event beside a poison one was not learned")
	}
	if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = $1`, gpPoison); n != 0 {
		t.Error("the poison event was learned")
	}
	if n := g.count(`SELECT count(*) FROM dead_letters WHERE event_id = $1`, poison.ID()); n != 1 {
		t.Errorf("the poison event parked %d times", n)
	}
}

func TestKafkaDownStillAnswers200AndTheOutboxDeliversLater(t *testing.T) {
	g := newRig(t)
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	port := g.kit.Brokers[0][strings.LastIndex(g.kit.Brokers[0], ":")+1:]
	g.kit.Kafka.Close()
	var ids []string
	for i := 0; i < 5; i++ {
		body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_k"+strconv.Itoa(i)+"_"+uniq, uuid.NewString(), "succeeded", 100))
		if got := outcome(t, g.stripe(body)); got != webhooks.Processed {
			t.Fatalf("with Kafka down: %s", got)
		}
		ids = append(ids, eventID(body))
	}
	if _, err := g.d.Publisher.Sweep(context.Background()); err == nil {
		t.Fatal("the sweep published with Kafka down")
	}
	if n := g.count(`SELECT count(*) FROM outbox WHERE source = $1`, webhooks.Name); n != 5 {
		t.Fatalf("%d events wait in the outbox, want 5", n)
	}
	p, _ := strconv.Atoi(port)
	cluster, err := testenv.NewKafka(kfake.Ports(p))
	if err != nil {
		t.Fatalf("restart Kafka: %v", err)
	}
	defer cluster.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := g.d.Publisher.Sweep(context.Background()); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("sweep after the restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	evs := g.updates(cluster.ListenAddrs(), 5, nil)
	if len(evs) != 5 {
		t.Fatalf("%d of 5 events delivered after the restart", len(evs))
	}
}

func TestRateLimitPerSourceAddress(t *testing.T) {
	g := newRig(t, func(c *api.Config) { c.RateLimit = 5 })
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	// send delivers from peer (127.0.0.1 is the gateway, a trusted proxy)
	// with X-Forwarded-For xff.
	send := func(peer, xff string) *httptest.ResponseRecorder {
		body := stripeEvent("payment_intent.processing", paymentIntent("pi_rl_"+uniq, uuid.NewString(), "processing", 100))
		r := httptest.NewRequest("POST", "/stripe", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
		r.Header.Set(webhooks.StripeSignatureHeader, signStripe(body, stripeSecret, g.clock.Now()))
		r.RemoteAddr = peer
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, r)
		return rec
	}
	const gw = "127.0.0.1:40000"
	for i := 0; i < 5; i++ {
		// The sender writes a different leftmost entry each time: the
		// gateway's appended address is what counts.
		if rec := send(gw, fmt.Sprintf("203.0.113.%d, 198.51.100.7", i)); rec.Code != 200 {
			t.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec := send(gw, "198.51.100.7")
	if code := problemCode(t, rec, 429); code != "rate_limited" || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("sixth: %s (Retry-After %q)", code, rec.Header().Get("Retry-After"))
	}
	if rec := send(gw, "10.9.9.9, 198.51.100.7"); rec.Code != 429 {
		t.Fatalf("a spoofed leftmost entry dodged the limit: %d", rec.Code)
	}
	// Straight to the function, X-Forwarded-For is not believed at all.
	if rec := send("198.51.100.7:5000", "203.0.113.99"); rec.Code != 429 {
		t.Fatalf("a direct sender's X-Forwarded-For dodged the limit: %d", rec.Code)
	}
	if rec := send(gw, "203.0.113.9"); rec.Code != 200 {
		t.Fatalf("another address: %d", rec.Code)
	}
	g.clock.Advance(time.Second)
	if rec := send(gw, "198.51.100.7"); rec.Code != 200 {
		t.Fatalf("next second: %d", rec.Code)
	}

}

func TestOversizeBodyIs413AndNothingIsStored(t *testing.T) {
	g := newRig(t)
	body := []byte(`{"id":"evt_big","object":"event","type":"payment_intent.succeeded","data":{"object":{"pad":"` + strings.Repeat("x", 1<<20) + `"}}}`)
	before := g.count(`SELECT count(*) FROM webhook_events`)
	if code := problemCode(t, g.stripe(body), 413); code != "payload_too_large" {
		t.Fatal(code)
	}
	if after := g.count(`SELECT count(*) FROM webhook_events`); after != before {
		t.Fatal("stored")
	}
	// Verified but not an event: 400, nothing stored.
	junk := []byte(`{"hello":"world"}`)
	if code := problemCode(t, g.stripe(junk), 400); code != string(webhooks.CodePayload) {
		t.Fatal(code)
	}
}

func TestAdminEventsListAndReplay(t *testing.T) {
	g := newRig(t)
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	piReplay := "pi_replay_" + uniq
	var mine []string // gateway event ids, oldest first
	for i := 0; i < 3; i++ {
		b := stripeEvent("payment_intent.succeeded", paymentIntent("pi_l"+strconv.Itoa(i)+"_"+uniq, uuid.NewString(), "succeeded", 100))
		outcome(t, g.stripe(b))
		mine = append(mine, eventID(b))
	}
	parkedBody := stripeEvent("charge.refunded", map[string]any{"id": "ch_r_" + uniq, "object": "charge", "amount": 100, "amount_refunded": 100,
		"currency": "usd", "payment_intent": piReplay})
	outcome(t, g.stripe(parkedBody))
	mine = append(mine, eventID(parkedBody))
	outcome(t, g.sandbox(stripeEvent("customer.created", map[string]any{"id": "cus_1_" + uniq, "object": "customer"})))

	type page struct {
		Data       []webhooks.Delivery `json:"data"`
		NextCursor string              `json:"next_cursor"`
		HasMore    bool                `json:"has_more"`
	}
	// Page through every stripe delivery (other tests share the database):
	// each exactly once, newest first, so this test's four in reverse order.
	seen := map[string]bool{}
	var order []string
	var parkedID string
	cursor := ""
	for i := 0; i < 1000; i++ {
		path := "/events?gateway=stripe&limit=7"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		rec := g.admin_("GET", path, nil, auth.RoleAdmin, "")
		var p page
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &p) != nil {
			t.Fatalf("list: %d %s", rec.Code, rec.Body)
		}
		for _, d := range p.Data {
			if seen[d.ID] || d.Gateway != webhooks.Stripe {
				t.Fatalf("listed %s twice or of another gateway", d.ID)
			}
			seen[d.ID] = true
			for _, m := range mine {
				if d.GatewayEventID == m {
					order = append(order, m)
					if m == eventID(parkedBody) {
						parkedID = d.ID
						if d.Status != webhooks.Parked {
							t.Fatalf("status %s", d.Status)
						}
					}
				}
			}
		}
		if !p.HasMore {
			break
		}
		cursor = p.NextCursor
	}
	if len(order) != 4 || order[0] != mine[3] || order[3] != mine[0] {
		t.Fatalf("this test's deliveries listed as %v, want the reverse of %v", order, mine)
	}
	var parkedList page
	_ = json.Unmarshal(g.admin_("GET", "/events?status=parked&type=charge.refunded&limit=100", nil, auth.RoleAdmin, "").Body.Bytes(), &parkedList)
	found := false
	for _, d := range parkedList.Data {
		if d.Status != webhooks.Parked || d.Type != "charge.refunded" {
			t.Fatalf("filter let through %+v", d)
		}
		found = found || d.ID == parkedID
	}
	if !found {
		t.Fatal("the parked delivery is not in the filtered list")
	}
	id := parkedID
	var one webhooks.Delivery
	rec := g.admin_("GET", "/events/"+id, nil, auth.RoleAdmin, "")
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &one) != nil || string(one.Body) != string(parkedBody) {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	for role, want := range map[auth.Role]int{"": 401, auth.RoleCustomer: 403, auth.RoleService: 403} {
		if rec := g.admin_("GET", "/events", nil, role, ""); rec.Code != want {
			t.Fatalf("%q: %d", role, rec.Code)
		}
	}
	// Replay while still unknown: stays parked. Then the map learns it: replay emits.
	rec = g.admin_("POST", "/events/"+id+"/replay", nil, auth.RoleAdmin, uuid.NewString())
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"status":"parked"`) {
		t.Fatalf("replay unknown: %d %s", rec.Code, rec.Body)
	}
	pid := uuid.NewString()
	if _, err := g.d.Pool.Exec(context.Background(), `INSERT INTO webhook_payment_refs VALUES ('stripe', $1, $2, 'test', now())`, piReplay, pid); err != nil {
		t.Fatal(err)
	}
	key := uuid.NewString()
	rec = g.admin_("POST", "/events/"+id+"/replay", nil, auth.RoleAdmin, key)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"status":"processed"`) || !strings.Contains(rec.Body.String(), `"replays":2`) {
		t.Fatalf("replay known: %d %s", rec.Code, rec.Body)
	}
	again := g.admin_("POST", "/events/"+id+"/replay", nil, auth.RoleAdmin, key)
	if again.Code != 200 || again.Header().Get("Idempotent-Replayed") != "true" || again.Body.String() != rec.Body.String() {
		t.Fatalf("idempotent replay: %d %s", again.Code, again.Body)
	}
	evs := g.updates(g.kit.Brokers, 1, func(_ events.Event, u events.GatewayUpdate) bool { return *u.PaymentID == pid })
	if len(evs) != 1 || evs[0].ID() == uuid.NewSHA1(updateNS, []byte("stripe:"+eventID(parkedBody))).String() {
		t.Fatalf("replayed events %d (a replay is a new event id)", len(evs))
	}
	if code := problemCode(t, g.admin_("POST", "/events/"+uuid.NewString()+"/replay", nil, auth.RoleAdmin, uuid.NewString()), 404); code != "not_found" {
		t.Fatal(code)
	}
	if code := problemCode(t, g.admin_("GET", "/events?status=lost", nil, auth.RoleAdmin, ""), 422); code != "validation_failed" {
		t.Fatal(code)
	}
	if code := problemCode(t, g.admin_("POST", "/events/"+id+"/replay", nil, auth.RoleAdmin, ""), 400); code != "idempotency_key_required" {
		t.Fatal(code)
	}
}

func TestUnconfiguredStripeEndpointAsksToRetry(t *testing.T) {
	g := newRig(t, func(c *api.Config) { c.StripeSecrets = "" })
	body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_x", uuid.NewString(), "succeeded", 1))
	if code := problemCode(t, g.post("/stripe", body, map[string]string{webhooks.StripeSignatureHeader: signStripe(body, stripeSecret, time.Now())}),
		http.StatusServiceUnavailable); code != string(webhooks.CodeNotConfigured) {
		t.Fatal(code)
	}
}

func TestTickReleasesParkedDeliveriesWhosePaymentIsKnown(t *testing.T) {
	g := newRig(t)
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	piTick := "pi_tick_" + uniq
	body := stripeEvent("charge.refunded", map[string]any{"id": "ch_t_" + uniq, "object": "charge", "amount": 300, "amount_refunded": 300,
		"currency": "usd", "payment_intent": piTick})
	if got := outcome(t, g.stripe(body)); got != webhooks.Parked {
		t.Fatal(got)
	}
	// The map learned the payment but the release did not happen (a crash).
	pid := uuid.NewString()
	if _, err := g.d.Pool.Exec(context.Background(), `INSERT INTO webhook_payment_refs VALUES ('stripe', $1, $2, 'test', now())`, piTick, pid); err != nil {
		t.Fatal(err)
	}
	if err := g.s.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs := g.updates(g.kit.Brokers, 1, func(_ events.Event, u events.GatewayUpdate) bool { return u.GatewayEventID == eventID(body) })
	if len(evs) != 1 {
		t.Fatal("the tick did not release the parked delivery")
	}
	if n := g.count(`SELECT count(*) FROM webhook_events WHERE gateway_event_id = $1 AND status = 'processed'`, eventID(body)); n != 1 {
		t.Fatal("still parked")
	}
}

// A verified webhook holding U+0000 where billfn reads (an id, the type,
// metadata) cannot be stored in Postgres text: it is a malformed payload
// (400), not a 503 the gateway would retry for days (found by the stack's
// attack test).
func TestAWebhookHoldingNULIsAMalformedPayload(t *testing.T) {
	g := newRig(t)
	for _, ev := range []struct{ id, typ, pid string }{
		{"evt_nul\x00", "payment_intent.succeeded", uuid.NewString()},
		{"evt_sbx_nul_2", "payment_intent\x00", uuid.NewString()},
		{"evt_sbx_nul_3", "payment_intent.succeeded", "\x00"},
	} {
		body, _ := sandbox.NewEvent(ev.id, ev.typ, g.clock.Now(), sandbox.PaymentIntent{ID: "pi_sbx_nul", Object: "payment_intent",
			Amount: 700, AmountReceived: 700, Currency: "eur", Status: "succeeded", Metadata: map[string]string{sandbox.MetadataPaymentID: ev.pid}})
		if rec := g.sandbox(body); rec.Code != 400 || !strings.Contains(rec.Body.String(), "webhook_payload_invalid") {
			t.Errorf("%q: %d %s", ev.id, rec.Code, rec.Body)
		}
	}
}

// A gateway's signing secret rotated in its secret file takes effect
// without a restart: the new secret is added beside the old (both verify),
// then the old is removed (it no longer does).
func TestARotatedWebhookSecretFileTakesEffectWithoutARestart(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	write := func(v string) { testenv.WriteSecret(t, dir, "stripe-webhook-secret", v) }
	write(stripeSecret)
	g := newRig(t)
	const next = "whsec_test_billfn_rotated_9876"
	post := func(secret string) int {
		body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_"+uuid.NewString()[:12], "", "succeeded", 500))
		return g.post("/stripe", body, map[string]string{webhooks.StripeSignatureHeader: signStripe(body, secret, g.clock.Now())}).Code
	}
	if post(stripeSecret) != 200 || post(next) != 401 {
		t.Fatal("before the rotation: the old secret must verify and the next must not")
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 15 s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	write(next + "," + stripeSecret)
	until("the added secret verifies", func() bool { return post(next) == 200 })
	if post(stripeSecret) != 200 {
		t.Fatal("during the rotation the old secret must still verify")
	}
	write(next)
	until("the removed secret is refused", func() bool { return post(stripeSecret) == 401 })
	if post(next) != 200 {
		t.Fatal("after the rotation the new secret must verify")
	}
}

// Issue 20: handle-webhook's events are signed with the function's origin
// key as they are written — a processed webhook's by the group commit, a
// released parked one's by the delivery that names its payment — and their
// outbox rows name the key, so the publisher relays them without decoding
// them. (The rows are kept in the outbox to be read: keepOutbox.)
func TestGatewayUpdatesAreSignedAsTheyAreWritten(t *testing.T) {
	g := newRig(t)
	g.keepOutbox()
	pid, parked := uuid.NewString(), uuid.NewString()
	uniq := uuid.NewString()[:8] // gateway objects of this run only: the database outlives it
	piSignedParked := "pi_signed_parked_" + uniq
	if got := outcome(t, g.stripe(stripeEvent("payment_intent.succeeded", paymentIntent("pi_signed_"+uniq, pid, "succeeded", 1050)))); got != webhooks.Processed {
		t.Fatalf("outcome %s", got)
	}
	refund := stripeEvent("charge.refunded", map[string]any{"id": "ch_s_" + uniq, "object": "charge", "amount": 500, "amount_captured": 500,
		"amount_refunded": 500, "currency": "usd", "payment_intent": piSignedParked, "metadata": map[string]any{}})
	if got := outcome(t, g.stripe(refund)); got != webhooks.Parked {
		t.Fatalf("outcome %s", got)
	}
	ev, _ := events.New(context.Background(), "capture-payment", "billfn.payment.captured", parked, map[string]any{
		"payment_id": parked, "gateway": "stripe", "gateway_payment_id": piSignedParked, "status": "succeeded", "amount": 500, "currency": "USD"})
	if rec := g.deliver(ev); rec.Code != 200 {
		t.Fatalf("payment event: %d %s", rec.Code, rec.Body)
	}
	seen := map[string]int{}
	for _, ev := range testenv.SignedAsWritten(t, g.d.Pool, g.d.Publisher.Signer.KeyID(), g.kit.Origins,
		`source = $1 AND key = ANY($2)`, webhooks.Name, []string{pid, parked}) {
		seen[ev.Subject()]++
	}
	if seen[pid] != 1 || seen[parked] != 1 {
		t.Fatalf("rows %v, want the processed webhook's update and the released one's", seen)
	}
}

// A webhook answered 503 because its write outlived the request's bound
// (postgres.DetachedTimeout) is still in the group commit's queue: it is
// stored later, and stored as it came. Before, its body buffer went back
// to the pool with the 503, the next webhook was read into it, and the
// queued write stored that webhook's bytes under the first one's id (a
// data race the race detector reports).
func TestAWebhookStoredAfterItsRequestGaveUpKeepsItsOwnBody(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	uniq := uuid.NewString()[:8]
	// A transaction holding the dedupe key of the first webhook stops the
	// group commit (one worker) at its INSERT; what comes next queues.
	first := stripeEvent("payment_intent.succeeded", paymentIntent("pi_q1_"+uniq, uuid.NewString(), "succeeded", 700))
	lock, err := g.d.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, `INSERT INTO webhook_events (id, gateway, gateway_event_id, type, status, body, occurred_at, received_at)
		VALUES ($1, 'stripe', $2, 'x', 'ignored', '\x00', now(), now())`, uuid.New(), eventID(first)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.stripe(first) }()
	for g.count(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%webhook_events%'`) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	queued := stripeEvent("payment_intent.succeeded", paymentIntent("pi_q2_"+uniq, uuid.NewString(), "succeeded", 700))
	if rec := g.stripe(queued); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("a write that outlives the request: %d %s, want 503", rec.Code, rec.Body)
	}
	// Webhooks of the same size read meanwhile, into recycled buffers.
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.stripe(stripeEvent("payment_intent.succeeded", paymentIntent(fmt.Sprintf("pi_q%d_%s", 3+i, uniq), uuid.NewString(), "succeeded", 700)))
		}()
	}
	for g.count(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%webhook_events%'`) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var stored []byte
	for {
		err := g.d.Pool.QueryRow(ctx, `SELECT body FROM webhook_events WHERE gateway = 'stripe' AND gateway_event_id = $1`, eventID(queued)).Scan(&stored)
		if err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !bytes.Equal(stored, queued) {
		t.Fatalf("stored under %s:\n%s\nwant its own body:\n%s", eventID(queued), stored, queued)
	}
}
