package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// received is one request the merchant's receiver got.
type received struct {
	id, timestamp, signature string
	body                     []byte
	event                    struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
}

// receiver is the merchant's endpoint: it records every request and
// answers what answer says (200 when nil).
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int) int // the status of the n-th request (1-based)
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	// The package's tests share one database (not in parallel): each
	// starts and ends without endpoints.
	clear := func() {
		if _, err := testenv.Pool(t).Exec(context.Background(), `DELETE FROM webhook_endpoints`); err != nil {
			t.Fatal(err)
		}
	}
	clear()
	t.Cleanup(clear)
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g := received{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"),
			signature: r.Header.Get("webhook-signature"), body: body}
		_ = json.Unmarshal(body, &g.event)
		rc.mu.Lock()
		rc.got = append(rc.got, g)
		n := len(rc.got)
		rc.mu.Unlock()
		status := 200
		if rc.answer != nil {
			status = rc.answer(n)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"ok":` + strconv.FormatBool(status < 300) + `}`))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// verifySignature checks a request as the Standard Webhooks specification
// says (standardwebhooks.com), written here from the spec rather than with
// billfn's signer: the signed content is "<webhook-id>.<webhook-timestamp>.<body>",
// HMAC-SHA256 keyed by the base64-decoded part of the secret after
// "whsec_", base64; webhook-signature is a space-delimited list of
// "v1,<signature>", one matching is enough; the timestamp is within five
// minutes of now.
func verifySignature(secret string, g received, now time.Time) error {
	if g.id == "" || g.timestamp == "" || g.signature == "" {
		return errors.New("a webhook-* header is missing")
	}
	ts, err := strconv.ParseInt(g.timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not a number")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("webhook-timestamp outside the tolerance")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(g.id + "." + g.timestamp + "." + string(g.body)))
	want := mac.Sum(nil)
	for _, part := range strings.Split(g.signature, " ") {
		version, sig, ok := strings.Cut(part, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no v1 signature matches")
}

// endpoint creates an endpoint through the API and answers it with its secret.
func (g *rig) endpoint(url string, types ...string) outgoing.Endpoint {
	g.t.Helper()
	rec := g.admin_("POST", "/endpoints", map[string]any{"url": url, "events": types, "description": "test"}, auth.RoleAdmin, "")
	if rec.Code != http.StatusCreated {
		g.t.Fatalf("create endpoint: %d %s", rec.Code, rec.Body)
	}
	var e outgoing.Endpoint
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		g.t.Fatal(err)
	}
	return e
}

// send runs the sender at the clock's now.
func (g *rig) send() int {
	g.t.Helper()
	n, err := g.s.SendDue(context.Background())
	if err != nil {
		g.t.Fatalf("send: %v", err)
	}
	return n
}

// fact is an event of typ from its owner, as the kafka-trigger delivers it.
func fact(t *testing.T, typ string) events.Event {
	t.Helper()
	spec, ok := events.SpecOf(typ)
	if !ok {
		t.Fatalf("%s is not in the contract", typ)
	}
	id := uuid.NewString()
	return events.Must(events.New(context.Background(), spec.Emitter, typ, id, map[string]any{"id": id}))
}

func (g *rig) deliverOK(evs ...events.Event) {
	g.t.Helper()
	if rec := g.deliver(evs...); rec.Code != http.StatusOK {
		g.t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
	}
}

func (g *rig) getJSON(path string, v any) {
	g.t.Helper()
	rec := g.admin_("GET", path, nil, auth.RoleAdmin, "")
	if rec.Code != http.StatusOK {
		g.t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		g.t.Fatal(err)
	}
}

func TestEndpointCreatedWithASecretShownOnce(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL+"/hooks", "billfn.invoice.*", "billfn.payment.captured", "billfn.invoice.*")
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(e.Secret, "whsec_"))
	if !strings.HasPrefix(e.Secret, "whsec_") || err != nil || len(key) < 24 {
		t.Fatalf("secret %q: want whsec_ and 24+ random bytes in base64", e.Secret)
	}
	if strings.Join(e.Events, ",") != "billfn.invoice.*,billfn.payment.captured" || e.Disabled {
		t.Fatalf("endpoint %+v", e)
	}
	rec := r.admin_("GET", "/endpoints/"+e.ID, nil, auth.RoleAdmin, "")
	if rec.Code != 200 || strings.Contains(rec.Body.String(), e.Secret) || strings.Contains(rec.Body.String(), `"secret"`) {
		t.Fatalf("GET shows the secret or fails: %d %s", rec.Code, rec.Body)
	}
	var list struct {
		Data []outgoing.Endpoint `json:"data"`
	}
	r.getJSON("/endpoints", &list)
	if len(list.Data) != 1 || list.Data[0].ID != e.ID || list.Data[0].Secret != "" {
		t.Fatalf("list %+v", list)
	}
	rec = r.admin_("PATCH", "/endpoints/"+e.ID, map[string]any{"events": []string{"billfn.refund.*"}, "description": "refunds"}, auth.RoleAdmin, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"events":["billfn.refund.*"]`) || !strings.Contains(rec.Body.String(), `"url":"`+rc.srv.URL+`/hooks"`) {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	if rec := r.admin_("DELETE", "/endpoints/"+e.ID, nil, auth.RoleAdmin, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if rec := r.admin_("GET", "/endpoints/"+e.ID, nil, auth.RoleAdmin, ""); rec.Code != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", rec.Code)
	}
}

// A client that timed out and sends its creation again with the same
// Idempotency-Key gets the first answer (the same endpoint and secret),
// and no second endpoint; the same key with another body is refused. The
// stored answer holds the secret sealed, as webhook_endpoints does: the
// idempotency table is no way around WEBHOOK_SECRETS_KEY.
func TestEndpointCreationHonoursTheIdempotencyKey(t *testing.T) {
	r := newRig(t, func(c *api.Config) { c.SecretsKey = "bench-and-test-key-0123456789abcdef" })
	rc := newReceiver(t, nil)
	body := map[string]any{"url": rc.srv.URL + "/hooks", "events": []string{events.TypeInvoicePaid}, "description": "retried"}
	other := map[string]any{"url": rc.srv.URL + "/other", "events": []string{events.TypeInvoicePaid}}
	first, again := r.postTwice(t, "/endpoints", body, other, http.StatusCreated)
	if n := r.count(`SELECT count(*) FROM webhook_endpoints`); n != 1 {
		t.Fatalf("%d endpoints after two creations with one key, want 1", n)
	}
	var a, b outgoing.Endpoint
	if json.Unmarshal(first.Body.Bytes(), &a) != nil || json.Unmarshal(again.Body.Bytes(), &b) != nil {
		t.Fatalf("answers %s / %s", first.Body, again.Body)
	}
	if a.ID != b.ID || a.Secret == "" || a.Secret != b.Secret || again.Header().Get("Location") != "/endpoints/"+a.ID {
		t.Fatalf("the replay is not the first answer:\n%s\n%s %v", first.Body, again.Body, again.Header())
	}
	if n := r.count(`SELECT count(*) FROM idempotency_keys WHERE position($1 in convert_from(response_body, 'UTF8')) > 0`,
		strings.TrimPrefix(a.Secret, "whsec_")); n != 0 {
		t.Fatal("the stored answer holds the signing secret in clear")
	}
	// Without a key (optional, as Stripe's create calls), each POST creates.
	r.endpoint(rc.srv.URL+"/third", events.TypeInvoicePaid)
	if n := r.count(`SELECT count(*) FROM webhook_endpoints`); n != 2 {
		t.Fatalf("%d endpoints, want 2", n)
	}
}

// fieldOf is the pointer of the first field error of a 422.
func fieldOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422: %s", rec.Code, rec.Body)
	}
	var d struct {
		Code   string `json:"code"`
		Errors []struct {
			Pointer string `json:"pointer"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &d)
	if d.Code != "validation_failed" || len(d.Errors) == 0 {
		t.Fatalf("problem %s", rec.Body)
	}
	return d.Errors[0].Pointer
}

func TestEndpointValidationNamesTheField(t *testing.T) {
	r := newRig(t, func(c *api.Config) { c.AllowedHosts = "" })
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"url": "https://hooks.example.com/x", "events": []string{"billfn.invoice.exploded"}}, "#/events/0"},
		{map[string]any{"url": "https://hooks.example.com/x", "events": []string{"billfn.invoice.paid", "billfn.nothing.*"}}, "#/events/1"},
		// commands are not news for a merchant
		{map[string]any{"url": "https://hooks.example.com/x", "events": []string{"billfn.transaction.requested"}}, "#/events/0"},
		{map[string]any{"url": "https://hooks.example.com/x", "events": []string{}}, "#/events"},
		{map[string]any{"url": "ftp://hooks.example.com/x", "events": []string{"billfn.invoice.paid"}}, "#/url"},
		{map[string]any{"url": "https://user:pw@hooks.example.com/x", "events": []string{"billfn.invoice.paid"}}, "#/url"},
		{map[string]any{"events": []string{"billfn.invoice.paid"}}, "#/url"},
		// private, loopback and link-local addresses, not allowed here
		{map[string]any{"url": "http://127.0.0.1:9/x", "events": []string{"billfn.invoice.paid"}}, "#/url"},
		{map[string]any{"url": "http://[::1]/x", "events": []string{"billfn.invoice.paid"}}, "#/url"},
		{map[string]any{"url": "http://10.1.2.3/x", "events": []string{"billfn.invoice.paid"}}, "#/url"},
		{map[string]any{"url": "http://169.254.169.254/latest/meta-data", "events": []string{"billfn.invoice.paid"}}, "#/url"},
		{map[string]any{"url": "http://localhost:8080/x", "events": []string{"billfn.invoice.paid"}}, "#/url"},
	} {
		if got := fieldOf(t, r.admin_("POST", "/endpoints", c.body, auth.RoleAdmin, "")); got != c.field {
			t.Errorf("%v: field %s, want %s", c.body, got, c.field)
		}
	}
	if n := r.count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
		t.Fatalf("%d endpoints stored from refused requests", n)
	}
}

// An endpoint gets the events of the types it subscribed to, each posted
// as the CloudEvent JSON and signed as Standard Webhooks says.
func TestEndpointReceivesSubscribedTypesOnlySigned(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, "billfn.invoice.*", "billfn.refund.succeeded")
	paid, captured, finalized, refund := fact(t, events.TypeInvoicePaid), fact(t, events.TypePaymentCaptured),
		fact(t, events.TypeInvoiceFinalized), fact(t, events.TypeRefundSucceeded)
	r.deliverOK(paid, captured, finalized)
	r.deliverOK(refund)
	r.send()
	got := rc.requests()
	var types []string
	for _, g := range got {
		if err := verifySignature(e.Secret, g, r.clock.Now()); err != nil {
			t.Errorf("%s: %v (signature %q)", g.event.Type, err, g.signature)
		}
		types = append(types, g.event.Type)
	}
	if strings.Join(types, ",") != strings.Join([]string{events.TypeInvoicePaid, events.TypeInvoiceFinalized, events.TypeRefundSucceeded}, ",") {
		t.Fatalf("received %v, want the invoice events and the refund in order", types)
	}
	if got[0].event.ID != paid.ID() || strings.Contains(string(got[0].body), events.OriginSigExt) {
		t.Fatalf("body %s", got[0].body)
	}
	var log struct {
		Data []outgoing.Delivery `json:"data"`
	}
	r.getJSON("/endpoints/"+e.ID+"/deliveries", &log)
	if len(log.Data) != 3 || log.Data[0].Status != outgoing.Succeeded || *log.Data[0].ResponseStatus != 200 || log.Data[0].Attempts != 1 ||
		log.Data[0].LatencyMS == nil || log.Data[0].ID != got[2].id {
		t.Fatalf("delivery log %+v", log.Data)
	}
}

// A 500 is retried on the schedule (5 s, then 5 min, then 30 min…), with
// the same webhook-id every time, and holds the endpoint's later
// deliveries until it succeeds.
func TestEndpointRetriedWithBackoffAndTheSameID(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, func(n int) int {
		if n <= 3 {
			return 500
		}
		return 200
	})
	e := r.endpoint(rc.srv.URL, "billfn.invoice.*")
	first, second := fact(t, events.TypeInvoicePaid), fact(t, events.TypeInvoiceVoided)
	r.deliverOK(first)
	if n := r.send(); n != 1 {
		t.Fatalf("first round: %d attempts", n)
	}
	r.deliverOK(second)
	steps := []struct {
		advance time.Duration
		want    int // requests received so far
	}{
		{0, 1}, {4 * time.Second, 1}, {time.Second, 2}, {4 * time.Minute, 2}, {time.Minute, 3},
		{29 * time.Minute, 3}, {time.Minute, 5}, // the fourth attempt succeeds; the second event follows at once
	}
	for i, s := range steps {
		r.clock.Advance(s.advance)
		r.send()
		if got := len(rc.requests()); got != s.want {
			t.Fatalf("step %d (+%s): %d requests, want %d", i, s.advance, got, s.want)
		}
	}
	got := rc.requests()
	for i := range 4 {
		if got[i].id != got[0].id || got[i].event.ID != first.ID() {
			t.Fatalf("attempt %d: webhook-id %s event %s, want %s %s", i+1, got[i].id, got[i].event.ID, got[0].id, first.ID())
		}
		if err := verifySignature(e.Secret, got[i], r.clock.Now()); i == 3 && err != nil {
			t.Fatalf("last attempt: %v", err)
		}
	}
	if got[4].event.ID != second.ID() || got[4].id == got[0].id {
		t.Fatalf("the held delivery: %+v", got[4])
	}
	var d outgoing.Delivery
	r.getJSON("/deliveries/"+got[0].id, &d)
	if d.Status != outgoing.Succeeded || d.Attempts != 4 || *d.ResponseStatus != 200 || d.EndpointID != e.ID {
		t.Fatalf("delivery %+v", d)
	}
}

// After the whole schedule (about three days) fails, the delivery is
// failed and the endpoint disabled with the reason; it gets no new
// deliveries until re-enabled.
func TestEndpointDisabledAfterTheRetryWindow(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, func(int) int { return 503 })
	e := r.endpoint(rc.srv.URL, "billfn.payment.*")
	r.deliverOK(fact(t, events.TypePaymentFailed))
	r.send()
	for _, wait := range outgoing.Schedule {
		r.clock.Advance(wait)
		r.send()
	}
	if w := outgoing.Window(); w < 60*time.Hour || w > 80*time.Hour {
		t.Fatalf("the retry window is %s, want about three days", w)
	}
	got := rc.requests()
	if len(got) != len(outgoing.Schedule)+1 {
		t.Fatalf("%d attempts, want %d", len(got), len(outgoing.Schedule)+1)
	}
	var ep outgoing.Endpoint
	r.getJSON("/endpoints/"+e.ID, &ep)
	if !ep.Disabled || ep.DisabledReason == nil || !strings.Contains(*ep.DisabledReason, "HTTP 503") {
		t.Fatalf("endpoint %+v", ep)
	}
	var d outgoing.Delivery
	r.getJSON("/deliveries/"+got[0].id, &d)
	if d.Status != outgoing.Failed || d.Attempts != len(got) || d.NextAttemptAt != nil {
		t.Fatalf("delivery %+v", d)
	}
	r.clock.Advance(30 * 24 * time.Hour)
	r.deliverOK(fact(t, events.TypePaymentCaptured))
	r.send()
	if n := len(rc.requests()); n != len(got) {
		t.Fatalf("a disabled endpoint got %d more requests", n-len(got))
	}
	// Re-enabled and the delivery retried by hand: it goes again, same id.
	rc.answer = nil
	if rec := r.admin_("PATCH", "/endpoints/"+e.ID, map[string]any{"disabled": false}, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Fatalf("enable: %d %s", rec.Code, rec.Body)
	}
	if rec := r.admin_("POST", "/deliveries/"+got[0].id+"/retry", nil, auth.RoleAdmin, ""); rec.Code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	r.send()
	again := rc.requests()
	if len(again) != len(got)+1 || again[len(got)].id != got[0].id {
		t.Fatalf("after the retry: %d requests, last id %s", len(again), again[len(again)-1].id)
	}
}

// A retry by hand asked while an attempt of the same delivery is in
// flight stands: that attempt's answer, recorded after it, neither erases
// the fresh schedule nor, being the last of the old one, disables the
// endpoint. Before, the attempt's record overwrote the retry (attempts 12,
// failed) and disabled the endpoint the admin had just retried.
func TestARetryAskedDuringAnAttemptIsNotErasedByIt(t *testing.T) {
	r := newRig(t)
	r.keepOutbox()
	started, release := make(chan struct{}), make(chan struct{})
	rc := newReceiver(t, func(n int) int {
		if n == 1 {
			close(started)
			<-release
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	// Its schedule all but spent: the attempt about to be made is its last.
	if _, err := r.d.Pool.Exec(context.Background(), `UPDATE webhook_deliveries SET attempts = $1 WHERE endpoint_id = $2`,
		len(outgoing.Schedule), e.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.s.SendDue(context.Background())
		done <- err
	}()
	<-started
	id := rc.requests()[0].id
	if rec := r.admin_("POST", "/deliveries/"+id+"/retry", nil, auth.RoleAdmin, ""); rec.Code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The retry is due now: the same pass sends it again, and it succeeds.
	if got := rc.requests(); len(got) != 2 || got[1].id != id {
		t.Fatalf("%d requests, want the delivery sent again after the retry", len(got))
	}
	var d outgoing.Delivery
	r.getJSON("/deliveries/"+id, &d)
	if d.Status != outgoing.Succeeded || d.Attempts != 1 {
		t.Fatalf("delivery %s after %d attempts, want succeeded after 1 of its fresh schedule", d.Status, d.Attempts)
	}
	var ep outgoing.Endpoint
	r.getJSON("/endpoints/"+e.ID, &ep)
	if evs, _ := r.disabledNotices(e.ID); ep.Disabled || len(evs) != 0 {
		t.Fatalf("endpoint disabled %v (%v), %d notices: the attempt the retry replaced disabled it", ep.Disabled, ep.DisabledReason, len(evs))
	}
}

// A delivery that succeeded may be sent again by hand, as Stripe resends
// any event to an endpoint: same webhook-id, and it takes its own place in
// its endpoint's order (its id), so the newer deliveries still pending wait
// behind it and reach the endpoint after it, in order.
func TestASucceededDeliveryIsResentInItsPlace(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, func(n int) int {
		if n == 2 { // the second event's first attempt
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	r.endpoint(rc.srv.URL, "billfn.invoice.*")
	e1, e2, e3 := fact(t, events.TypeInvoicePaid), fact(t, events.TypeInvoiceVoided), fact(t, events.TypeInvoiceFinalized)
	r.deliverOK(e1)
	r.send()
	r.deliverOK(e2)
	r.deliverOK(e3)
	r.send() // e2 fails and holds e3
	first := rc.requests()[0].id
	rec := r.admin_("POST", "/deliveries/"+first+"/retry", nil, auth.RoleAdmin, "")
	if rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"status":"pending"`) {
		t.Fatalf("resend a succeeded delivery: %d %s", rec.Code, rec.Body)
	}
	r.send()
	r.clock.Advance(5 * time.Second) // e2's retry
	r.send()
	got := rc.requests()
	var order []string
	for _, g := range got {
		order = append(order, g.event.ID)
	}
	want := []string{e1.ID(), e2.ID(), e1.ID(), e2.ID(), e3.ID()}
	if strings.Join(order, ",") != strings.Join(want, ",") || got[2].id != first {
		t.Fatalf("events received %v, want %v (the resend with webhook-id %s)", order, want, first)
	}
}

// A retry by hand asked twice with one Idempotency-Key (a client that
// timed out) is one retry: the delivery is sent once more, not twice, and
// the second answer is the first; the key with another body is refused.
func TestADeliveryRetryHonoursTheIdempotencyKey(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	id := rc.requests()[0].id
	path := "/deliveries/" + id + "/retry"
	first, again := r.postTwice(t, path, nil, map[string]any{}, http.StatusAccepted)
	if n := r.count(`SELECT retries FROM webhook_deliveries WHERE id = $1`, id); n != 1 {
		t.Fatalf("%d retries after two requests with one key, want 1", n)
	}
	if first.Body.String() != again.Body.String() {
		t.Fatalf("the replay is not the first answer:\n%s\n%s %v", first.Body, again.Body, again.Header())
	}
	r.send()
	r.send()
	if got := rc.requests(); len(got) != 2 {
		t.Fatalf("the endpoint received %d requests, want the delivery and one resend", len(got))
	}
	// Without a key (optional), each request retries.
	if rec := r.admin_("POST", path, nil, auth.RoleAdmin, ""); rec.Code != http.StatusAccepted {
		t.Fatalf("retry without a key: %d %s", rec.Code, rec.Body)
	}
	if n := r.count(`SELECT retries FROM webhook_deliveries WHERE id = $1`, id); n != 2 {
		t.Fatalf("%d retries, want 2", n)
	}
}

// A rotation asked twice with one Idempotency-Key (a client that lost the
// first answer) rotates once: the second answer is the first, with the
// same new secret, and the secret the client had stays the previous one
// (a second rotation would have made the new one previous and the old one
// gone). The stored answer holds the secret sealed, as webhook_endpoints
// does, not in clear; the key with another body is refused.
func TestEndpointSecretRotationHonoursTheIdempotencyKey(t *testing.T) {
	r := newRig(t, func(c *api.Config) { c.SecretsKey = "bench-and-test-key-0123456789abcdef" })
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	path := "/endpoints/" + e.ID + "/rotate-secret"
	first, again := r.postTwice(t, path, nil, map[string]any{}, http.StatusOK)
	var a, b outgoing.Endpoint
	if json.Unmarshal(first.Body.Bytes(), &a) != nil || json.Unmarshal(again.Body.Bytes(), &b) != nil {
		t.Fatalf("answers %s / %s", first.Body, again.Body)
	}
	if a.Secret == "" || a.Secret == e.Secret || a.Secret != b.Secret || a.ID != b.ID {
		t.Fatalf("the replay is not the first answer:\n%s\n%s %v", first.Body, again.Body, again.Header())
	}
	// One rotation: the deliveries are signed with the answered secret and
	// the one before it, nothing else.
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	got := rc.requests()
	if len(got) != 1 || strings.Count(got[0].signature, "v1,") != 2 {
		t.Fatalf("requests %+v, want one signed with two secrets", got)
	}
	for _, s := range []string{e.Secret, a.Secret} {
		if err := verifySignature(s, got[0], r.clock.Now()); err != nil {
			t.Errorf("after one rotation: %v", err)
		}
	}
	if n := r.count(`SELECT count(*) FROM idempotency_keys WHERE position($1 in convert_from(response_body, 'UTF8')) > 0`,
		strings.TrimPrefix(a.Secret, "whsec_")); n != 0 {
		t.Fatal("the stored answer holds the signing secret in clear")
	}
	// Without a key (optional), each request rotates.
	rec := r.admin_("POST", path, nil, auth.RoleAdmin, "")
	var c outgoing.Endpoint
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &c) != nil || c.Secret == "" || c.Secret == a.Secret {
		t.Fatalf("rotate without a key: %d %s", rec.Code, rec.Body)
	}
}

// During the 24 hours after a rotation every delivery carries a signature
// with the new secret and one with the old; then only the new.
func TestEndpointSecretRotationSignsWithBothFor24Hours(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	rec := r.admin_("POST", "/endpoints/"+e.ID+"/rotate-secret", nil, auth.RoleAdmin, "")
	var rotated outgoing.Endpoint
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &rotated) != nil || rotated.Secret == "" || rotated.Secret == e.Secret {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	r.clock.Advance(outgoing.RotationOverlap + time.Second)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	got := rc.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	during, after := got[0], got[1]
	if strings.Count(during.signature, "v1,") != 2 {
		t.Fatalf("during the overlap: %q, want two v1 signatures", during.signature)
	}
	overlapNow := r.clock.Now().Add(-outgoing.RotationOverlap - time.Second)
	for _, s := range []string{e.Secret, rotated.Secret} {
		if err := verifySignature(s, during, overlapNow); err != nil {
			t.Errorf("during the overlap: %v", err)
		}
	}
	if err := verifySignature(rotated.Secret, after, r.clock.Now()); err != nil {
		t.Errorf("after the overlap, the new secret: %v", err)
	}
	if err := verifySignature(e.Secret, after, r.clock.Now()); err == nil || strings.Count(after.signature, "v1,") != 1 {
		t.Errorf("after the overlap the old secret still signs: %q", after.signature)
	}
}

// A private address is refused when the endpoint is created, and again
// when a delivery dials it (an address that changed since: DNS
// rebinding, or an allowlist since narrowed).
func TestEndpointPrivateAddressesRefusedAtCreateAndAtDial(t *testing.T) {
	open := newRig(t) // allows 127.0.0.1
	rc := newReceiver(t, nil)
	e := open.endpoint(rc.srv.URL, events.TypeInvoicePaid)

	strict := newRig(t, func(c *api.Config) { c.AllowedHosts = "" })
	if f := fieldOf(t, strict.admin_("POST", "/endpoints", map[string]any{"url": rc.srv.URL, "events": []string{events.TypeInvoicePaid}}, auth.RoleAdmin, "")); f != "#/url" {
		t.Fatalf("field %s", f)
	}
	// The endpoint accepted under the other configuration, now sent by a
	// function that does not allow loopback (written in SQL: used once the
	// function heard of it).
	if _, err := strict.d.Pool.Exec(context.Background(), `INSERT INTO webhook_endpoints (id, url, events, secret, created_at, updated_at)
		VALUES ($1, $2, $3, $4, now(), now())`, uuid.NewString(), rc.srv.URL, []string{events.TypeInvoicePaid}, e.Secret); err != nil {
		t.Fatal(err)
	}
	if _, err := strict.d.Pool.Exec(context.Background(), `DELETE FROM webhook_endpoints WHERE id = $1`, e.ID); err != nil {
		t.Fatal(err)
	}
	heardOf(strict, events.TypeInvoicePaid, true)
	strict.deliverOK(fact(t, events.TypeInvoicePaid))
	strict.send()
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
	var id string
	if err := strict.d.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_endpoints`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Data []outgoing.Delivery `json:"data"`
	}
	strict.getJSON("/endpoints/"+id+"/deliveries", &log)
	if len(log.Data) != 1 || log.Data[0].Status != outgoing.Pending || log.Data[0].Error == nil ||
		!strings.Contains(*log.Data[0].Error, "not public") || log.Data[0].ResponseStatus != nil {
		t.Fatalf("delivery log %+v", log.Data)
	}
}

// An endpoint's URL must name a public address, and "public" is more than
// Go's private and loopback sets: the shared address space (RFC 6598; pod
// networks, a cloud's metadata service at 100.100.100.200), NAT64 and 6to4
// forms of private IPv4 addresses, the IPv4-compatible form and the
// benchmarking range are refused like 10.0.0.1 (shared/egress).
func TestEndpointURLsOutsideThePublicInternetAreRefused(t *testing.T) {
	r := newRig(t, func(c *api.Config) { c.AllowedHosts = "" })
	for _, u := range []string{
		"http://100.100.100.200/latest/meta-data/",
		"http://100.64.0.1/",
		"http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
		"http://[64:ff9b::a00:1]/",
		"http://[::7f00:1]/",
		"http://[2002:a00:1::]/",
		"http://198.18.0.1/",
	} {
		rec := r.admin_("POST", "/endpoints", map[string]any{"url": u, "events": []string{events.TypeInvoicePaid}}, auth.RoleAdmin, "")
		if rec.Code != http.StatusUnprocessableEntity {
			t.Errorf("POST /endpoints url=%s: %d, want 422 (not a public address)", u, rec.Code)
		}
	}
}

// A redirect is the answer, never followed: the delivery failed.
func TestEndpointRedirectsAreNotFollowed(t *testing.T) {
	r := newRig(t)
	elsewhere := newReceiver(t, nil)
	rc := newReceiver(t, func(int) int { return 307 })
	rc.srv.Config.Handler = http.RedirectHandler(elsewhere.srv.URL, http.StatusTemporaryRedirect)
	r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	if n := len(elsewhere.requests()); n != 0 {
		t.Fatalf("the redirect was followed (%d requests)", n)
	}
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND response_status = 307 AND attempts = 1`); n != 1 {
		t.Fatalf("%d deliveries pending after a 307", n)
	}
}

// A redelivered event (the trigger retries, a batch repeats it) gives one
// delivery per endpoint, sent once.
func TestRedeliveredEventDeliversNothingTwice(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	other := newReceiver(t, nil)
	r.endpoint(rc.srv.URL, "billfn.invoice.*")
	r.endpoint(other.srv.URL, events.TypeInvoicePaid)
	ev := fact(t, events.TypeInvoicePaid)
	r.deliverOK(ev)
	r.deliverOK(ev)
	r.deliverOK(ev, ev, fact(t, events.TypeInvoiceVoided))
	r.send()
	r.deliverOK(ev)
	r.send()
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE event_id = $1`, ev.ID()); n != 2 {
		t.Fatalf("%d deliveries of one event to two endpoints", n)
	}
	if a, b := len(rc.requests()), len(other.requests()); a != 2 || b != 1 {
		t.Fatalf("requests: %d and %d, want 2 (paid, voided) and 1 (paid)", a, b)
	}
}

// POST /endpoints/{id}/test sends a billfn.webhook.test event, logged like
// any delivery.
func TestEndpointTestEvent(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	rec := r.admin_("POST", "/endpoints/"+e.ID+"/test", nil, auth.RoleAdmin, "")
	var d outgoing.Delivery
	if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &d) != nil || d.Status != outgoing.Pending {
		t.Fatalf("test: %d %s", rec.Code, rec.Body)
	}
	r.send()
	got := rc.requests()
	if len(got) != 1 || got[0].event.Type != outgoing.TestType || got[0].id != d.ID || verifySignature(e.Secret, got[0], r.clock.Now()) != nil {
		t.Fatalf("received %+v", got)
	}
	if rec := r.admin_("POST", "/endpoints/"+uuid.NewString()+"/test", nil, auth.RoleAdmin, ""); rec.Code != http.StatusNotFound {
		t.Fatalf("test of no endpoint: %d", rec.Code)
	}
}

// A client that timed out and asks for the test event again with the same
// Idempotency-Key gets the first answer (the same delivery) and the
// endpoint one test event, not two; the key with another body is refused.
func TestEndpointTestEventHonoursTheIdempotencyKey(t *testing.T) {
	r := newRig(t)
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	path := "/endpoints/" + e.ID + "/test"
	first, again := r.postTwice(t, path, nil, map[string]any{}, http.StatusAccepted)
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, e.ID); n != 1 {
		t.Fatalf("%d test deliveries after two requests with one key, want 1", n)
	}
	var a, b outgoing.Delivery
	if json.Unmarshal(first.Body.Bytes(), &a) != nil || json.Unmarshal(again.Body.Bytes(), &b) != nil {
		t.Fatalf("answers %s / %s", first.Body, again.Body)
	}
	if a.ID == "" || a.ID != b.ID || again.Header().Get("Location") != "/deliveries/"+a.ID {
		t.Fatalf("the replay is not the first answer:\n%s\n%s %v", first.Body, again.Body, again.Header())
	}
	r.send()
	if got := rc.requests(); len(got) != 1 || got[0].id != a.ID {
		t.Fatalf("the endpoint received %d requests, want the one test event", len(got))
	}
	// Without a key (optional), each request sends one.
	if rec := r.admin_("POST", path, nil, auth.RoleAdmin, ""); rec.Code != http.StatusAccepted {
		t.Fatalf("test without a key: %d %s", rec.Code, rec.Body)
	}
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, e.ID); n != 2 {
		t.Fatalf("%d test deliveries, want 2", n)
	}
}

// The tick prunes the delivery log: a finished delivery (succeeded, or
// failed after its schedule) goes WEBHOOK_DELIVERY_RETENTION after its
// last attempt; a pending one stays, however old.
func TestFinishedDeliveriesArePrunedAfterTheRetention(t *testing.T) {
	r := newRig(t, func(c *api.Config) { c.DeliveryRetention = config.Duration(30 * 24 * time.Hour) })
	ok := newReceiver(t, nil)
	failing := newReceiver(t, func(int) int { return 500 })
	held := newReceiver(t, nil)
	eOK, eFailing := r.endpoint(ok.srv.URL, events.TypeInvoicePaid), r.endpoint(failing.srv.URL, events.TypeInvoicePaid)
	eHeld := r.endpoint(held.srv.URL, events.TypeInvoicePaid)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	// Held: its endpoint disabled before the sender came; the delivery waits.
	if rec := r.admin_("PATCH", "/endpoints/"+eHeld.ID, map[string]any{"disabled": true}, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Fatalf("disable: %d %s", rec.Code, rec.Body)
	}
	start := r.clock.Now()
	r.send()
	for _, wait := range outgoing.Schedule {
		r.clock.Advance(wait)
		r.send()
	}
	left := func(e outgoing.Endpoint) int {
		return r.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, e.ID)
	}
	tick := func() {
		if err := r.s.Tick(context.Background()); err != nil {
			t.Fatalf("tick: %v", err)
		}
	}
	var failed outgoing.Delivery
	r.getJSON("/deliveries/"+failing.requests()[0].id, &failed)
	if failed.Status != outgoing.Failed || left(eOK) != 1 || left(eHeld) != 1 {
		t.Fatalf("before: failed %+v, %d ok, %d held", failed, left(eOK), left(eHeld))
	}

	r.clock.Set(start.Add(30*24*time.Hour - time.Minute))
	tick()
	if left(eOK) != 1 || left(eFailing) != 1 || left(eHeld) != 1 {
		t.Fatal("pruned before the retention")
	}
	r.clock.Set(start.Add(30*24*time.Hour + time.Minute))
	tick()
	if left(eOK) != 0 || left(eFailing) != 1 || left(eHeld) != 1 {
		t.Fatalf("after 30 days: %d succeeded, %d failed (last attempt %s), %d pending left", left(eOK), left(eFailing), failed.LastAttemptAt, left(eHeld))
	}
	r.clock.Set(failed.LastAttemptAt.Add(30*24*time.Hour + time.Minute))
	tick()
	if left(eFailing) != 0 || left(eHeld) != 1 {
		t.Fatalf("30 days after the failure: %d failed, %d pending left", left(eFailing), left(eHeld))
	}
	r.clock.Advance(365 * 24 * time.Hour)
	tick()
	if left(eHeld) != 1 {
		t.Fatal("a pending delivery was pruned")
	}
}

// With WEBHOOK_SECRETS_KEY the endpoints' secrets are sealed in
// webhook_endpoints (nothing of the whsec_ there), and deliveries still
// verify with the secret shown once, across a rotation; a secret stored
// in clear before the key keeps working and is sealed at its next change.
func TestEndpointSecretsAreSealedAtRest(t *testing.T) {
	const key = "bench-and-test-key-0123456789abcdef"
	r := newRig(t, func(c *api.Config) { c.SecretsKey = key })
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	stored := func(id string) (cur, prev string) {
		t.Helper()
		if err := r.d.Pool.QueryRow(context.Background(), `SELECT secret, coalesce(previous_secret, '') FROM webhook_endpoints WHERE id = $1`,
			id).Scan(&cur, &prev); err != nil {
			t.Fatal(err)
		}
		return cur, prev
	}
	body := strings.TrimPrefix(e.Secret, "whsec_")
	if cur, _ := stored(e.ID); !strings.HasPrefix(cur, "sealed:v1:") || strings.Contains(cur, body) {
		t.Fatalf("stored secret %q", cur)
	}
	rec := r.admin_("POST", "/endpoints/"+e.ID+"/rotate-secret", nil, auth.RoleAdmin, "")
	var rotated outgoing.Endpoint
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &rotated) != nil {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	if cur, prev := stored(e.ID); !strings.HasPrefix(cur, "sealed:v1:") || !strings.HasPrefix(prev, "sealed:v1:") || strings.Contains(prev, body) {
		t.Fatalf("after the rotation: %q / %q", cur, prev)
	}
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	for _, s := range []string{e.Secret, rotated.Secret} {
		if err := verifySignature(s, got[0], r.clock.Now()); err != nil {
			t.Errorf("a sealed secret signs: %v", err)
		}
	}

	// Stored in clear before the key was configured: read as it is, sealed
	// at the endpoint's next change.
	plain := "whsec_" + base64.StdEncoding.EncodeToString([]byte("an-old-secret-of-32-bytes-long!!"))
	legacy := uuid.NewString()
	if _, err := r.d.Pool.Exec(context.Background(), `INSERT INTO webhook_endpoints (id, url, events, secret, created_at, updated_at)
		VALUES ($1, $2, $3, $4, now(), now())`, legacy, rc.srv.URL, []string{events.TypeInvoiceVoided}, plain); err != nil {
		t.Fatal(err)
	}
	heardOf(r, events.TypeInvoiceVoided, true) // written in SQL: used once the function heard of it
	r.deliverOK(fact(t, events.TypeInvoiceVoided))
	r.send()
	if got := rc.requests(); len(got) != 2 || verifySignature(plain, got[1], r.clock.Now()) != nil {
		t.Fatalf("the plain secret's endpoint: %d requests", len(got))
	}
	if rec := r.admin_("PATCH", "/endpoints/"+legacy, map[string]any{"description": "sealed now"}, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	if cur, _ := stored(legacy); !strings.HasPrefix(cur, "sealed:v1:") {
		t.Fatalf("not sealed at its next change: %q", cur)
	}
	// Without the key, a sealed secret is an error, not a wrong signature.
	none := newRig(t)
	if rec := none.admin_("GET", "/endpoints/"+e.ID, nil, auth.RoleAdmin, ""); rec.Code != http.StatusInternalServerError {
		t.Fatalf("read without the key: %d %s", rec.Code, rec.Body)
	}
}

// disabledNotices are the billfn.webhook_endpoint.disabled events waiting
// in handle-webhook's outbox about endpoint id, with their data: the
// test keeps them there (keepOutbox), or any commit that kicked the
// publisher would have them relayed and deleted before they are read.
func (g *rig) disabledNotices(id string) ([]events.Event, []events.WebhookEndpointDisabled) {
	g.t.Helper()
	rows, err := g.d.Pool.Query(context.Background(), `SELECT topic, payload FROM outbox WHERE source = $1 AND key = $2 ORDER BY id`,
		webhooks.Name, id)
	if err != nil {
		g.t.Fatal(err)
	}
	defer rows.Close()
	var (
		evs []events.Event
		ds  []events.WebhookEndpointDisabled
	)
	for rows.Next() {
		var (
			topic   string
			payload []byte
		)
		if err := rows.Scan(&topic, &payload); err != nil {
			g.t.Fatal(err)
		}
		ev, err := events.Unmarshal(payload)
		if err != nil {
			g.t.Fatal(err)
		}
		if ev.Type() != events.TypeWebhookEndpointDisabled {
			continue
		}
		if want, _ := events.ContractTopic(ev.Type()); topic != want || ev.Source() != events.Source(webhooks.Name) || ev.Subject() != id {
			g.t.Fatalf("notice on %s from %s about %s", topic, ev.Source(), ev.Subject())
		}
		var d events.WebhookEndpointDisabled
		if err := events.Decode(ev, &d); err != nil {
			g.t.Fatal(err)
		}
		evs, ds = append(evs, ev), append(ds, d)
	}
	if err := rows.Err(); err != nil {
		g.t.Fatal(err)
	}
	return evs, ds
}

// An endpoint disabled after its retry window announces it once,
// through the outbox in the transaction that disabled it: a
// billfn.webhook_endpoint.disabled naming the endpoint, its URL, the
// reason and the failing delivery. It is a fact like any other for the
// merchant's endpoints: one subscribed to it receives it, signed, once
// however often the event is redelivered. An endpoint an admin disables
// announces nothing, and a second disabling (re-enabled, failed again
// after a retry by hand) a second notice.
func TestDisabledEndpointIsAnnouncedOnceThroughTheOutbox(t *testing.T) {
	r := newRig(t)
	r.keepOutbox()
	failing := newReceiver(t, func(int) int { return 503 })
	watcher := newReceiver(t, nil)
	e := r.endpoint(failing.srv.URL, "billfn.invoice.paid")
	w := r.endpoint(watcher.srv.URL, "billfn.webhook_endpoint.*")
	admin := r.endpoint(failing.srv.URL+"/admin", "billfn.invoice.paid")
	if rec := r.admin_("PATCH", "/endpoints/"+admin.ID, map[string]any{"disabled": true}, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Fatalf("disable: %d %s", rec.Code, rec.Body)
	}
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	for i, wait := range outgoing.Schedule {
		if evs, _ := r.disabledNotices(e.ID); len(evs) != 0 {
			t.Fatalf("a notice after %d of %d attempts", i+1, len(outgoing.Schedule)+1)
		}
		r.clock.Advance(wait)
		r.send()
	}
	evs, ds := r.disabledNotices(e.ID)
	if len(evs) != 1 {
		t.Fatalf("%d notices, want 1", len(evs))
	}
	var ep outgoing.Endpoint
	r.getJSON("/endpoints/"+e.ID, &ep)
	d, first := ds[0], failing.requests()[0]
	if !ep.Disabled || d.EndpointID != e.ID || d.URL != e.URL || ep.DisabledReason == nil || d.Reason != *ep.DisabledReason ||
		!strings.Contains(d.Reason, "HTTP 503") || d.DeliveryID != first.id || d.EventType != events.TypeInvoicePaid ||
		d.Attempts != len(outgoing.Schedule)+1 || d.LastStatus == nil || *d.LastStatus != 503 {
		t.Fatalf("notice %+v, endpoint %+v", d, ep)
	}
	if got := d.DisabledAt.Sub(d.FailingSince); got < outgoing.Window() {
		t.Fatalf("failing for %s, want at least the window %s", got, outgoing.Window())
	}
	if n, _ := r.disabledNotices(admin.ID); len(n) != 0 {
		t.Fatalf("an endpoint disabled by an admin announced it: %d notices", len(n))
	}

	// handle-webhook receives its own notice back from payment-events:
	// the watcher gets it, once.
	r.deliverOK(evs[0])
	r.deliverOK(evs[0])
	r.send()
	got := watcher.requests()
	if len(got) != 1 {
		t.Fatalf("the watcher got %d deliveries, want 1", len(got))
	}
	if err := verifySignature(w.Secret, got[0], r.clock.Now()); err != nil {
		t.Fatalf("the notice's signature: %v", err)
	}
	var ce struct {
		ID   string                         `json:"id"`
		Type string                         `json:"type"`
		Data events.WebhookEndpointDisabled `json:"data"`
	}
	if err := json.Unmarshal(got[0].body, &ce); err != nil || ce.Type != events.TypeWebhookEndpointDisabled || ce.ID != evs[0].ID() ||
		ce.Data.URL != e.URL {
		t.Fatalf("the watcher got %s (%v)", got[0].body, err)
	}

	// Enabled again, the delivery retried by hand, failing through the
	// whole schedule again: a second disabling, a second notice.
	if rec := r.admin_("PATCH", "/endpoints/"+e.ID, map[string]any{"disabled": false}, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Fatalf("enable: %d %s", rec.Code, rec.Body)
	}
	if rec := r.admin_("POST", "/deliveries/"+first.id+"/retry", nil, auth.RoleAdmin, ""); rec.Code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	r.send()
	for _, wait := range outgoing.Schedule {
		r.clock.Advance(wait)
		r.send()
	}
	// (The first notice is still there: the second is the other one.)
	var second []events.WebhookEndpointDisabled
	evs2, ds2 := r.disabledNotices(e.ID)
	for i, ev := range evs2 {
		if ev.ID() != evs[0].ID() {
			second = append(second, ds2[i])
		}
	}
	if len(second) != 1 || second[0].DeliveryID != first.id || !second[0].DisabledAt.After(d.DisabledAt) {
		t.Fatalf("%d notices of the second disabling, want 1: %+v", len(second), second)
	}
}

// TestDisabledEndpointNoticeLeavesOnTheFastPath: the notice of an endpoint
// the sender disabled is relayed as soon as it is committed, as every
// other event is (the commit kicks the outbox publisher), not at the next
// sweep, which a cluster runs once a minute and this rig never.
func TestDisabledEndpointNoticeLeavesOnTheFastPath(t *testing.T) {
	r := newRig(t)
	failing := newReceiver(t, func(int) int { return 503 })
	e := r.endpoint(failing.srv.URL, "billfn.invoice.paid")
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	r.send()
	for _, wait := range outgoing.Schedule {
		r.clock.Advance(wait)
		r.send()
	}
	var ep outgoing.Endpoint
	r.getJSON("/endpoints/"+e.ID, &ep)
	if !ep.Disabled {
		t.Fatalf("the endpoint was not disabled: %+v", ep)
	}
	// The publisher relays and deletes the notice's row; nothing else
	// will (no sweep runs here). Waiting for a condition, with a deadline
	// that only a notice left behind reaches.
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _ := r.disabledNotices(e.ID)
		if len(evs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the notice is still in the outbox: nothing relayed it")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An endpoint whose secret no key opens (WEBHOOK_SECRETS_KEY rotated
// without its old key) gets nothing, unsigned or not, and holds no other
// endpoint: before, its row failed the whole claim, so every endpoint
// leased with it in the round waited, round after round.
func TestAnEndpointWhoseSecretDoesNotOpenHoldsNoOtherEndpoint(t *testing.T) {
	r := newRig(t)
	broken, healthy := newReceiver(t, nil), newReceiver(t, nil)
	b := r.endpoint(broken.srv.URL, events.TypeInvoicePaid)
	h := r.endpoint(healthy.srv.URL, events.TypeInvoicePaid)
	if _, err := r.d.Pool.Exec(context.Background(), `UPDATE webhook_endpoints SET secret = 'sealed:v1:00000000:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
		WHERE id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	sent := r.clock.Now()
	for range 2 {
		_, _ = r.s.SendDue(context.Background())
		r.clock.Advance(time.Hour) // past any lease
	}
	if got := healthy.requests(); len(got) != 1 || verifySignature(h.Secret, got[0], sent) != nil {
		t.Fatalf("the healthy endpoint got %d requests, want 1 signed", len(got))
	}
	if got := broken.requests(); len(got) != 0 {
		t.Fatalf("the endpoint whose secret does not open got %d requests", len(got))
	}
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'`, b.ID); n != 1 {
		t.Fatalf("its delivery: %d pending, want 1 (it waits for the key)", n)
	}
}

// A slow endpoint holds no other: while one endpoint takes its time to
// answer, a delivery queued for another is sent. Before, the sender
// waited for every endpoint of a round before it claimed again, so one
// endpoint answering in 14 s held every other for up to 50 × 14 s.
func TestASlowEndpointHoldsNoOther(t *testing.T) {
	r := newRig(t)
	bGot := make(chan struct{})
	var once sync.Once
	fast := newReceiver(t, func(int) int {
		once.Do(func() { close(bGot) })
		return 200
	})
	// The slow endpoint answers once the other got its delivery: in time
	// only if that one did not wait for this answer.
	aStarted := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		close(aStarted)
		select {
		case <-bGot:
			w.WriteHeader(http.StatusNoContent)
		case <-req.Context().Done(): // the sender gave up (WEBHOOK_SEND_TIMEOUT)
		}
	}))
	t.Cleanup(slow.Close)
	r.endpoint(slow.URL, events.TypeInvoicePaid)
	b := r.endpoint(fast.srv.URL, events.TypeInvoiceFinalized)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	done := make(chan error, 1)
	go func() {
		_, err := r.s.SendDue(context.Background())
		done <- err
	}()
	<-aStarted
	r.deliverOK(fact(t, events.TypeInvoiceFinalized))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'`); n != 2 {
		t.Fatalf("%d deliveries succeeded, want 2: the other endpoint's waited for the slow one's answer", n)
	}
	if got := fast.requests(); len(got) != 1 || verifySignature(b.Secret, got[0], r.clock.Now()) != nil {
		t.Fatalf("the other endpoint got %d requests", len(got))
	}
}

// postTwice sends a POST twice under one Idempotency-Key, as a client that
// timed out does: both answers must be want, the second a replay; then
// under the same key another body, which must be refused.
func (r *rig) postTwice(t *testing.T, path string, body, other any, want int) (first, again *httptest.ResponseRecorder) {
	t.Helper()
	key := uuid.NewString()
	first = r.admin_("POST", path, body, auth.RoleAdmin, key)
	again = r.admin_("POST", path, body, auth.RoleAdmin, key)
	if first.Code != want || again.Code != want || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("POST %s: %d %s, again: %d %s %v", path, first.Code, first.Body, again.Code, again.Body, again.Header())
	}
	if code := problemCode(t, r.admin_("POST", path, other, auth.RoleAdmin, key), 422); code != "idempotency_key_reused" {
		t.Fatalf("POST %s, the key with another body: %s", path, code)
	}
	return first, again
}
