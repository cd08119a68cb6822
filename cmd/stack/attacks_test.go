package main

// Hostile input against a running stack, through the gateway as an
// attacker would reach it. Every subtest fails if its attack works: a
// forged credential accepted, someone else's data read or moved, an
// unsigned event applied, a 5xx, a dead function, a card number in a log.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/sandbox"
)

// fnNames are the five functions.
var fnNames = []string{"process-transaction", "generate-invoice", "capture-payment", "handle-webhook", "aggregate-report"}

// TestAttacks starts one stack and runs every attack class against it, one
// subtest per class, each class its own function below (go test -run
// 'TestAttacks/Webhooks' runs one class). A stack takes about a minute to
// build and start and belongs to the test that started it, so the classes
// share one, as they did when they were one function. Afterwards runs last:
// it checks what every class before it may have broken.
func TestAttacks(t *testing.T) {
	s := &attackScene{e: startStack(t, stackOptions{env: []string{"LOG_LEVEL=debug"}})}
	s.pids = map[string]int{}
	for _, f := range fnNames {
		if s.pids[f] = s.e.pidOf(f); s.pids[f] == 0 {
			t.Fatalf("no %s process", f)
		}
	}

	// The victim B owns one of everything; the attacker A is a customer too.
	e := s.e
	s.a, s.b = e.newCustomer("USD"), e.newCustomer("USD")
	e.fund(s.a, 10_000, "USD")
	e.fund(s.b, 50_000, "USD")
	s.third = e.newCustomer("USD")
	s.v = victimOf(t, e, s.b, s.third)
	s.before = s.v.state(e)

	t.Run("Tokens", func(t *testing.T) { attacksTokens(t, s) })
	t.Run("Ownership", func(t *testing.T) { attacksOwnership(t, s) })
	t.Run("ForgedEvents", func(t *testing.T) { attacksForgedEvents(t, s) })
	t.Run("ForgedOrigins", func(t *testing.T) { attacksForgedOrigins(t, s) }) // attacks_origin_test.go
	t.Run("Webhooks", func(t *testing.T) { attacksWebhooks(t, s) })
	t.Run("HostileInput", func(t *testing.T) { attacksHostileInput(t, s) })
	t.Run("CardNumbers", func(t *testing.T) { attacksCardNumbers(t, s) })
	t.Run("Afterwards", func(t *testing.T) { attacksAfterwards(t, s) })
}

// attackScene is what every attack class shares: the stack, the attacker
// A, the victim B (who owns one of everything) and a third customer, B's
// resources as they were before any attack, and each function's pid.
type attackScene struct {
	e      *e2e
	a, b   customer
	third  customer
	v      victim
	before victimState
	pids   map[string]int
}

// attacksTokens: forged or tampered credentials are refused by every function.
func attacksTokens(t *testing.T, s *attackScene) {
	e, a, b, v := s.e, s.a, s.b, s.v
	t.Run("forged JWTs are refused by every function", func(t *testing.T) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		claims := func(mod func(*jwt.MapClaims)) jwt.MapClaims {
			c := jwt.MapClaims{"sub": adminSubject, "role": "admin", "iss": "billfn", "aud": "billfn",
				"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
			if mod != nil {
				mod(&c)
			}
			return c
		}
		sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
			s, err := jwt.NewWithClaims(m, c).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		// The stack signs with its Ed25519 private key; the functions hold
		// only the public key.
		priv, err := auth.ParsePrivateKeyPEM([]byte(e.secret("jwt-private-key")))
		if err != nil {
			t.Fatal(err)
		}
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		valid := sign(jwt.SigningMethodEdDSA, priv, claims(nil))
		parts := strings.Split(valid, ".")
		forged := map[string]string{
			"alg none":                      sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)),
			"alg None":                      rawJWT(`{"alg":"None","typ":"JWT"}`, claims(nil), ""),
			"alg none, signature kept":      rawJWT(`{"alg":"none","typ":"JWT"}`, claims(nil), parts[2]),
			"RS256 with the attacker's key": sign(jwt.SigningMethodRS256, key, claims(nil)),
			"EdDSA with another key":        sign(jwt.SigningMethodEdDSA, other, claims(nil)),
			// key confusion: an HMAC made with a public key as the secret
			"HS256 keyed with an RSA public key": sign(jwt.SigningMethodHS256, []byte(fmt.Sprint(key.PublicKey.N)), claims(nil)),
			// The local stack's JWT secret used to be this public constant.
			"HS256 with the old public dev secret": sign(jwt.SigningMethodHS256, []byte("billfn-local-development-secret-change-me"), claims(nil)),
			"HS256 with another secret":            sign(jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), claims(nil)),
			"expired":                              sign(jwt.SigningMethodEdDSA, priv, claims(func(c *jwt.MapClaims) { (*c)["exp"] = now.Add(-2 * time.Minute).Unix() })),
			"without exp":                          sign(jwt.SigningMethodEdDSA, priv, claims(func(c *jwt.MapClaims) { delete(*c, "exp") })),
			"living ten years (JWT_MAX_LIFETIME)":  sign(jwt.SigningMethodEdDSA, priv, claims(func(c *jwt.MapClaims) { (*c)["exp"] = now.Add(10 * 365 * 24 * time.Hour).Unix() })),
			"issued in the future":                 sign(jwt.SigningMethodEdDSA, priv, claims(func(c *jwt.MapClaims) { (*c)["iat"] = now.Add(time.Hour).Unix() })),
			"wrong audience":                       sign(jwt.SigningMethodEdDSA, priv, claims(func(c *jwt.MapClaims) { (*c)["aud"] = "someone-else" })),
			"wrong issuer":                         sign(jwt.SigningMethodEdDSA, priv, claims(func(c *jwt.MapClaims) { (*c)["iss"] = "evil" })),
			"payload swapped":                      parts[0] + "." + rawPart(claims(func(c *jwt.MapClaims) { (*c)["sub"] = b.user })) + "." + parts[2],
			"garbage":                              "not.a.jwt",
		}
		// The banner's token (export TOKEN=…) is signed with the same key.
		banner := regexp.MustCompile(`export TOKEN=(\S+)`).FindStringSubmatch(e.out.String())
		if banner == nil {
			t.Fatal("the banner prints no export TOKEN=")
		}
		controls := map[string]string{"a token signed with the stack's key": valid, "the banner's token": banner[1]}
		// A token signed with any secret a function holds opens nothing: a
		// compromised function cannot mint tokens for the others.
		// (one directory per function and the kafka-trigger)
		procs, err := os.ReadDir(filepath.Join(e.runDir, "secrets", functionsSubdir))
		var held []string
		for _, p := range procs {
			files, _ := os.ReadDir(filepath.Join(e.runDir, "secrets", functionsSubdir, p.Name()))
			for _, f := range files {
				held = append(held, filepath.Join(functionsSubdir, p.Name(), f.Name()))
			}
		}
		if err != nil || len(held) == 0 {
			t.Fatalf("the functions' secrets: %v", err)
		}
		for _, name := range held {
			v := e.secret(name)
			forged["HS256 keyed with the functions' "+name] = sign(jwt.SigningMethodHS256, []byte(v), claims(nil))
			forged["HS512 keyed with the functions' "+name] = sign(jwt.SigningMethodHS512, []byte(v), claims(nil))
		}
		endpoints := map[string]string{
			"process-transaction": "/function/process-transaction/accounts/" + b.account,
			"generate-invoice":    "/function/generate-invoice/invoices/" + v.openInvoice,
			"capture-payment":     "/function/capture-payment/payments/" + v.authorized,
			"handle-webhook":      "/function/handle-webhook/events",
			"aggregate-report":    "/function/aggregate-report/reports/summary",
		}
		for _, f := range fnNames {
			for what, tok := range controls {
				if r := e.req(http.MethodGet, endpoints[f], nil, "Authorization", "Bearer "+tok); r.status != http.StatusOK {
					t.Fatalf("control: %s on %s got %s", what, f, r)
				}
			}
			for name, tok := range forged {
				r := e.req(http.MethodGet, endpoints[f], nil, "Authorization", "Bearer "+tok)
				if r.status != http.StatusUnauthorized || str(r.body, "code") != "unauthorized" {
					t.Errorf("%s: %s token got %s", f, name, r)
				}
			}
		}
		// A write with a forged token moves nothing.
		for name, tok := range forged {
			r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
				"from_account_id": b.account, "to_account_id": a.account, "amount": 100, "currency": "USD"},
				"Authorization", "Bearer "+tok, "Idempotency-Key", uuid.NewString())
			if r.status != http.StatusUnauthorized {
				t.Errorf("transfer with a %s token: %s", name, r)
			}
		}
	})
}

// attacksOwnership: a customer reaches none of another's resources, and issue 14's four flaws stay shut.
func attacksOwnership(t *testing.T, s *attackScene) {
	e, a, b, v, before := s.e, s.a, s.b, s.v, s.before
	t.Run("a customer cannot read or move another's resources by id", func(t *testing.T) {
		tok := "Bearer " + a.token
		type attempt struct {
			method, path string
			body         any
			want         []int
		}
		notFound := []int{http.StatusNotFound}
		adminOnly := []int{http.StatusForbidden, http.StatusNotFound}
		pt, gi, cp, hw, ar := "/function/process-transaction", "/function/generate-invoice", "/function/capture-payment",
			"/function/handle-webhook", "/function/aggregate-report"
		attempts := []attempt{
			{"GET", pt + "/accounts/" + b.account, nil, notFound},
			{"GET", pt + "/accounts/" + b.account + "/transactions", nil, notFound},
			{"GET", pt + "/transfers/" + v.transfer, nil, notFound},
			{"POST", pt + "/transfers", map[string]any{"from_account_id": b.account, "to_account_id": a.account, "amount": 100, "currency": "USD"}, notFound},
			{"POST", pt + "/transfers", map[string]any{"from_account_number": b.number, "to_account_id": a.account, "amount": 100, "currency": "USD"}, notFound},
			{"POST", pt + "/transfers/batch", map[string]any{"transfers": []any{map[string]any{"from_account_id": b.account, "to_account_id": a.account, "amount": 100, "currency": "USD"}}, "atomic": true}, []int{http.StatusNotFound, http.StatusUnprocessableEntity}},
			{"POST", pt + "/transfers/" + v.hold + "/capture", map[string]any{"amount": 10}, notFound},
			{"POST", pt + "/transfers/" + v.hold + "/void", nil, notFound},
			{"PATCH", pt + "/accounts/" + b.account, map[string]any{"status": "frozen"}, adminOnly},
			{"GET", gi + "/invoices/" + v.openInvoice, nil, notFound},
			{"GET", gi + "/invoices/" + v.openInvoice + ".pdf", nil, notFound},
			{"GET", gi + "/invoices/" + v.openInvoice + ".html", nil, notFound},
			{"PATCH", gi + "/invoices/" + v.draft, map[string]any{"memo": "pwned"}, notFound},
			{"POST", gi + "/invoices/" + v.draft + "/lines", map[string]any{"line_items": []any{map[string]any{"description": "x", "unit_amount": 1}}}, notFound},
			{"POST", gi + "/invoices/" + v.draft + "/finalize", nil, notFound},
			{"POST", gi + "/invoices/" + v.openInvoice + "/void", nil, adminOnly},
			{"POST", gi + "/invoices/" + v.openInvoice + "/pay", map[string]any{"amount": 1}, adminOnly},
			{"GET", gi + "/invoice-requests/" + v.request, nil, notFound},
			{"GET", gi + "/subscriptions/" + v.subscription, nil, notFound},
			{"POST", gi + "/subscriptions/" + v.subscription + "/cancel", map[string]any{"at_period_end": false}, notFound},
			{"PATCH", gi + "/subscriptions/" + v.subscription, map[string]any{"cancel_at_period_end": true}, adminOnly},
			{"GET", cp + "/payments/" + v.authorized, nil, notFound},
			{"POST", cp + "/payments/" + v.authorized + "/capture", map[string]any{"amount": 100}, notFound},
			{"POST", cp + "/payments/" + v.authorized + "/cancel", map[string]any{}, notFound},
			{"POST", cp + "/payments/" + v.captured + "/refunds", map[string]any{"amount": 100}, adminOnly}, // refunds are the merchant's (issue 14)
			{"GET", cp + "/payments/" + v.captured + "/refunds", nil, notFound},
			{"GET", cp + "/accounts/" + b.account + "/payment-methods", nil, []int{http.StatusNotFound, http.StatusOK}},
			{"DELETE", cp + "/accounts/" + b.account + "/payment-methods/" + v.method, nil, notFound},
			{"POST", cp + "/accounts/" + b.account + "/payment-methods/" + v.method + "/default", nil, notFound},
			{"POST", cp + "/payments", map[string]any{"account_id": a.account, "amount": 100, "currency": "USD", "payment_method": v.method, "confirm": true}, []int{http.StatusUnprocessableEntity, http.StatusNotFound}},
			{"GET", hw + "/events", nil, adminOnly},
			{"GET", ar + "/reports/summary?account_id=" + b.account, nil, notFound},
			{"GET", ar + "/reports/timeseries?metric=transfer.posted&granularity=day&account_id=" + b.account, nil, notFound},
			{"GET", ar + "/admin/check", nil, adminOnly},
		}
		for _, at := range attempts {
			r := e.req(at.method, at.path, at.body, "Authorization", tok, "Idempotency-Key", uuid.NewString())
			ok := false
			for _, w := range at.want {
				ok = ok || r.status == w
			}
			if !ok {
				t.Errorf("A: %s %s → %s, want %v", at.method, at.path, r, at.want)
			}
			if r.status == http.StatusOK && strings.Contains(string(r.raw), v.method) {
				t.Errorf("A: %s %s shows B's payment method: %s", at.method, at.path, r)
			}
		}
		// Lists filtered on B show nothing of B's.
		for _, path := range []string{
			pt + "/accounts?user_id=" + b.user,
			gi + "/invoices?user_id=" + b.user, gi + "/invoices?account_id=" + b.account,
			gi + "/subscriptions?user_id=" + b.user, gi + "/subscriptions?account_id=" + b.account,
			cp + "/payments?account_id=" + b.account,
			ar + "/reports/top-accounts?currency=USD&include_system=true",
		} {
			r := e.req(http.MethodGet, path, nil, "Authorization", tok)
			if r.status >= 500 || (r.status == http.StatusOK && v.leaks(string(r.raw), b)) {
				t.Errorf("A: GET %s → %s", path, r)
			}
		}
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	// The four flaws of issue 14, each tried as the attacker would. They
	// must fail to work: refused, and nothing of B's touched.
	t.Run("issue 14: an invoice on another's account cannot charge their saved card", func(t *testing.T) {
		e.defaultMethod(b, "pm_card_visa") // what auto-collection would charge
		payments := func() int64 { return e.scalar(`SELECT count(*) FROM payments WHERE account_id::text = $1`, b.account) }
		invoices := func() int64 { return e.scalar(`SELECT count(*) FROM invoices WHERE account_id::text = $1`, b.account) }
		p0, i0, bal0 := payments(), invoices(), e.balance(b.account)
		r := e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
			"account_id": b.account, "currency": "USD", "auto_finalize": true,
			"line_items": []any{map[string]any{"description": "nothing at all", "unit_amount": 99_999_999}}},
			"Authorization", "Bearer "+a.token, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusNotFound {
			t.Errorf("A invoicing B's account: %s, want 404", r)
		}
		e.quiesce(60 * time.Second) // an invoice accepted would be collected by now
		if p, i, bal := payments(), invoices(), e.balance(b.account); p != p0 || i != i0 || bal != bal0 {
			t.Errorf("B was invoiced or charged: payments %d → %d, invoices %d → %d, balance %d → %d", p0, p, i0, i, bal0, bal)
		}
	})

	t.Run("issue 14: a customer cannot replace another's default payment method", func(t *testing.T) {
		def := func() string {
			var id string
			_ = e.db.QueryRow(context.Background(), `SELECT coalesce(max(id::text), '') FROM payment_methods WHERE account_id::text = $1 AND is_default`, b.account).Scan(&id)
			return id
		}
		count := func() int64 {
			return e.scalar(`SELECT count(*) FROM payment_methods WHERE account_id::text = $1`, b.account)
		}
		d0, n0 := def(), count()
		r := e.req(http.MethodPost, "/function/capture-payment/accounts/"+b.account+"/payment-methods",
			map[string]any{"token": "pm_card_chargeDeclinedInsufficientFunds", "default": true},
			"Authorization", "Bearer "+a.token, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusNotFound {
			t.Errorf("A saving a method on B's account: %s, want 404", r)
		}
		if d, n := def(), count(); d != d0 || n != n0 {
			t.Errorf("B's payment methods changed: default %q → %q, count %d → %d", d0, d, n0, n)
		}
	})

	t.Run("issue 14: a customer cannot pay into or charge for another's account", func(t *testing.T) {
		payments := func() int64 { return e.scalar(`SELECT count(*) FROM payments WHERE account_id::text = $1`, b.account) }
		p0, bal0 := payments(), e.balance(b.account)
		for _, body := range []map[string]any{
			{"account_id": b.account, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa", "confirm": true},
			{"account_id": b.account, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa", "capture_method": "manual", "confirm": true},
			{"account_id": b.account, "amount": 100, "currency": "USD"},
		} {
			r := e.req(http.MethodPost, "/function/capture-payment/payments", body,
				"Authorization", "Bearer "+a.token, "Idempotency-Key", uuid.NewString())
			if r.status != http.StatusNotFound {
				t.Errorf("A paying for B's account %v: %s, want 404", body, r)
			}
		}
		e.quiesce(60 * time.Second)
		if p, bal := payments(), e.balance(b.account); p != p0 || bal != bal0 {
			t.Errorf("B's account took a payment: payments %d → %d, balance %d → %d", p0, p, bal0, bal)
		}
	})

	t.Run("issue 14: a customer cannot refund, even its own payment", func(t *testing.T) {
		// A customer of its own, so A's balance stays what the later
		// subtests expect.
		c := e.newCustomer("USD")
		r := e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{"account_id": c.account, "amount": 2_000,
			"currency": "USD", "payment_method": "pm_card_visa", "confirm": true},
			"Authorization", "Bearer "+c.token, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusCreated || str(r.body, "status") != "succeeded" {
			t.Fatalf("the customer's own card payment: %s", r)
		}
		paid := str(r.body, "id")
		e.quiesce(60 * time.Second) // the payment posted to the customer's account
		bal := e.balance(c.account)
		r = e.req(http.MethodPost, "/function/capture-payment/payments/"+paid+"/refunds", map[string]any{"amount": 2_000},
			"Authorization", "Bearer "+c.token, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusForbidden {
			t.Errorf("a customer refunding its own payment: %s, want 403 (refunds are the merchant's)", r)
		}
		e.quiesce(60 * time.Second)
		if n := e.scalar(`SELECT count(*) FROM refunds WHERE payment_id::text = $1`, paid); n != 0 {
			t.Errorf("%d refunds were created", n)
		}
		if got := e.balance(c.account); got != bal {
			t.Errorf("the customer's balance %d → %d", bal, got)
		}
	})
}

// attacksForgedEvents: CloudEvent deliveries that are unsigned or forged change nothing.
func attacksForgedEvents(t *testing.T, s *attackScene) {
	e, a, b, v, before := s.e, s.a, s.b, s.v, s.before
	t.Run("unsigned or forged CloudEvent deliveries are refused by every function", func(t *testing.T) {
		signingKey := []byte(strings.Split(e.secret("event-signing-key"), ",")[0])
		evs := map[string]events.Event{
			"process-transaction": mustEvent(t, "billfn.transaction.requested", a.account, map[string]any{
				"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": a.account, "amount": 1_000_000, "currency": "USD"}),
			"generate-invoice": mustEvent(t, "billfn.payment.captured", v.authorized, map[string]any{
				"payment_id": uuid.NewString(), "invoice_id": v.openInvoice, "account_id": b.account, "amount": 12000,
				"amount_captured": 12000, "currency": "USD", "status": "succeeded", "gateway": "sandbox"}),
			"capture-payment": mustEvent(t, "billfn.payment.gateway_updated", v.authorized, map[string]any{
				"gateway": "sandbox", "gateway_event_id": "evt_forged", "gateway_event_type": "payment_intent.succeeded",
				"object_type": "payment_intent", "gateway_object_id": v.authorizedGW, "gateway_payment_id": v.authorizedGW,
				"payment_id": v.authorized, "status": "succeeded", "amount": 5000, "amount_received": 5000, "currency": "USD",
				"occurred_at": time.Now().UTC().Format(time.RFC3339)}),
			"handle-webhook": mustEvent(t, "billfn.payment.created", uuid.NewString(), map[string]any{
				"payment_id": uuid.NewString(), "account_id": a.account, "amount": 1, "currency": "USD", "status": "processing",
				"gateway": "sandbox", "gateway_payment_id": "pi_forged"}),
			"aggregate-report": mustEvent(t, "billfn.transaction.posted", a.account, map[string]any{
				"id": uuid.NewString(), "from_account_id": a.account, "to_account_id": b.account, "amount": 777_777, "currency": "USD",
				"status": "posted"}),
		}
		reportBefore, _ := figure(e.summary("USD", ""), "transfers.posted")
		for f, ev := range evs {
			body, _ := events.Marshal(ev)
			batch, _ := json.Marshal([]json.RawMessage{body})
			data, _ := json.Marshal(ev.Data())
			stale := events.SignDelivery(signingKey, time.Now().Add(-10*time.Minute), f, body)
			// The same delivery, signed with the real key for another
			// function: what an eavesdropper on one function's traffic has.
			other := "process-transaction"
			if f == other {
				other = "aggregate-report"
			}
			tries := []struct {
				name  string
				body  []byte
				hdrs  []string
				codes []int
			}{
				{"structured, unsigned", body, []string{"Content-Type", events.ContentTypeStructured}, []int{401}},
				{"kafka-connector form, unsigned", body, []string{"Content-Type", events.ContentTypeStructured, "X-Topic", "transaction-events", "X-Connector", "kafka-trigger"}, []int{401}},
				{"batch, unsigned", batch, []string{"Content-Type", "application/cloudevents-batch+json"}, []int{401}},
				{"binary, unsigned", data, []string{"Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", ev.ID(), "ce-source", ev.Source(), "ce-type", ev.Type()}, []int{401}},
				{"signed with another key", body, []string{"Content-Type", events.ContentTypeStructured, events.SignatureHeader, events.SignDelivery([]byte("not-the-key-not-the-key-not-the-key"), time.Now(), f, body)}, []int{401}},
				{"signed ten minutes ago", body, []string{"Content-Type", events.ContentTypeStructured, events.SignatureHeader, stale}, []int{401}},
				{"signature of another body", body, []string{"Content-Type", events.ContentTypeStructured, events.SignatureHeader, events.SignDelivery(signingKey, time.Now(), f, batch)}, []int{401}},
				{"signed for another function", body, []string{"Content-Type", events.ContentTypeStructured, events.SignatureHeader, events.SignDelivery(signingKey, time.Now(), other, body)}, []int{401}},
				{"disguised as a tick", body, []string{"Content-Type", events.ContentTypeStructured, "X-Connector", "cron-connector"}, []int{401}},
				{"a customer's bearer token", body, []string{"Content-Type", events.ContentTypeStructured, "Authorization", "Bearer " + a.token}, []int{401, 403}},
			}
			for _, tr := range tries {
				hdrs := append([]string{"Authorization", ""}, tr.hdrs...)
				r := e.req(http.MethodPost, "/function/"+f+"/", tr.body, hdrs...)
				if !contains(tr.codes, r.status) {
					t.Errorf("%s, %s: %s", f, tr.name, r)
				}
			}
			if n := e.scalar(`SELECT count(*) FROM processed_events WHERE id = $1`, ev.ID()); n != 0 {
				t.Errorf("%s processed the forged event", f)
			}
		}
		e.quiesce(30 * time.Second)
		if got := e.balance(a.account); got != 10_000 {
			t.Errorf("A's balance %d after forged top-ups", got)
		}
		if n, _ := figure(e.summary("USD", ""), "transfers.posted"); n != reportBefore {
			t.Errorf("the report counts %d posted transfers, %d before the forgeries", n, reportBefore)
		}
		if n := e.scalar(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = 'pi_forged'`); n != 0 {
			t.Errorf("handle-webhook learned a forged payment")
		}
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
		// Control: the same kind of delivery signed with the real key is applied.
		// It carries the integrator's origin proof, as every event must.
		ctl := e.asIntegrator(t, mustEvent(t, "billfn.transaction.requested", a.account, map[string]any{
			"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": a.account, "amount": 1, "currency": "USD"}))
		body, _ := events.Marshal(ctl)
		r := e.req(http.MethodPost, "/function/process-transaction/", body, "Authorization", "",
			"Content-Type", events.ContentTypeStructured, events.SignatureHeader, events.SignDelivery(signingKey, time.Now(), "process-transaction", body))
		if r.status != http.StatusOK || e.balance(a.account) != 10_001 {
			t.Errorf("control: a signed delivery got %s", r)
		}
		e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{ // back to 10 000
			"from_account_id": a.account, "to_account_number": "SYS-EXTERNAL-USD", "amount": 1, "currency": "USD"}, "Idempotency-Key", uuid.NewString())
	})
}

// attacksWebhooks: forged and replayed gateway webhooks change nothing.
func attacksWebhooks(t *testing.T, s *attackScene) {
	e, a, v, before := s.e, s.a, s.v, s.before
	t.Run("forged and replayed webhooks change nothing", func(t *testing.T) {
		secret := []byte(e.secret("sandbox-webhook-secret"))
		// A forged "succeeded" for B's authorized (uncaptured) payment.
		forged, _ := sandbox.NewEvent("evt_forged_"+uuid.NewString()[:8], "payment_intent.succeeded", time.Now(), sandbox.PaymentIntent{
			ID: v.authorizedGW, Object: "payment_intent", Amount: 5000, AmountReceived: 5000, Currency: "usd", Status: "succeeded",
			Metadata: map[string]string{sandbox.MetadataPaymentID: v.authorized}})
		other := []byte(strings.Replace(string(forged), "5000", "5001", 1))
		cases := []struct {
			name, path, header string
			want               int
		}{
			{"no signature", "/sandbox", "", 401},
			{"signed with another secret", "/sandbox", sandbox.Sign([]byte("whsec_attacker"), time.Now(), forged), 401},
			{"signed ten minutes ago", "/sandbox", sandbox.Sign(secret, time.Now().Add(-10*time.Minute), forged), 401},
			{"signed ten minutes ahead", "/sandbox", sandbox.Sign(secret, time.Now().Add(10*time.Minute), forged), 401},
			{"the signature of another body", "/sandbox", sandbox.Sign(secret, time.Now(), other), 401},
			{"malformed signature", "/sandbox", "v1=deadbeef", 400},
			{"the sandbox's signature on the Stripe endpoint", "/stripe", sandbox.Sign(secret, time.Now(), forged), 401},
		}
		for _, c := range cases {
			hdr := sandbox.SignatureHeader
			if c.path == "/stripe" {
				hdr = "Stripe-Signature"
			}
			hdrs := []string{"Authorization", ""}
			if c.header != "" {
				hdrs = append(hdrs, hdr, c.header)
			}
			r := e.req(http.MethodPost, "/function/handle-webhook"+c.path, forged, hdrs...)
			if r.status != c.want {
				t.Errorf("%s: %s, want %d", c.name, r, c.want)
			}
		}
		if n := e.scalar(`SELECT count(*) FROM webhook_events WHERE gateway_event_id LIKE 'evt_forged%' OR position('evt_forged' in convert_from(body, 'UTF8')) > 0`); n != 0 {
			t.Errorf("%d forged webhooks stored", n)
		}

		// A genuine webhook: a payment the sandbox settles later.
		r := e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
			"account_id": a.account, "user_id": a.user, "amount": 700, "currency": "USD", "payment_method": "pm_sandbox_delayed", "confirm": true},
			"Idempotency-Key", uuid.NewString())
		if r.status != http.StatusCreated {
			t.Fatalf("delayed payment: %s", r)
		}
		pid, gw := str(r.body, "id"), str(r.body, "gateway_payment_id")
		e.eventually("the sandbox's webhook to settle the payment", 60*time.Second, func() bool {
			return str(e.req(http.MethodGet, "/function/capture-payment/payments/"+pid, nil).body, "status") == "succeeded"
		})
		var genuine []byte
		e.eventually("the stored webhook", 30*time.Second, func() bool {
			rows, err := e.db.Query(context.Background(), `SELECT body FROM webhook_events WHERE gateway = 'sandbox' AND gateway_payment_id = $1 AND type = 'payment_intent.succeeded'`, gw)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				_ = rows.Scan(&genuine)
			}
			return genuine != nil
		})
		e.quiesce(30 * time.Second)
		snap := func() string {
			p := e.req(http.MethodGet, "/function/capture-payment/payments/"+pid, nil).body
			return fmt.Sprint(num(p, "amount_captured"), str(p, "status"), e.balance(a.account), e.systemBalances(),
				e.scalar(`SELECT count(*) FROM transfers`), e.scalar(`SELECT count(*) FROM webhook_events`))
		}
		was := snap()
		sig := sandbox.Sign(secret, time.Now(), genuine)
		for i := 0; i < 3; i++ { // replayed byte for byte, header included
			r := e.req(http.MethodPost, "/function/handle-webhook/sandbox", genuine, "Authorization", "", sandbox.SignatureHeader, sig)
			if r.status != http.StatusOK || str(r.body, "status") != "duplicate" {
				t.Errorf("replay %d: %s", i+1, r)
			}
		}
		r = e.req(http.MethodPost, "/function/handle-webhook/sandbox", genuine, "Authorization", "",
			sandbox.SignatureHeader, sandbox.Sign(secret, time.Now().Add(-time.Hour), genuine))
		if r.status != http.StatusUnauthorized {
			t.Errorf("an hour-old capture of a genuine webhook: %s", r)
		}
		e.quiesce(30 * time.Second)
		if now := snap(); now != was {
			t.Errorf("replays changed the system:\nbefore %s\nafter  %s", was, now)
		}
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})
}

// attacksHostileInput: oversized, deeply nested, SQL-laden and out-of-range input is refused, never a 5xx.
func attacksHostileInput(t *testing.T, s *attackScene) {
	e, a, b, third, v, before := s.e, s.a, s.b, s.third, s.v, s.before
	t.Run("oversized bodies answer 413 and deep nesting 400, the functions live on", func(t *testing.T) {
		big := []byte(`{"description":"` + strings.Repeat("a", 1<<20) + `"}`)
		deepArr := []byte(strings.Repeat("[", 100_000))
		deepObj := []byte(strings.Repeat(`{"a":`, 100_000))
		posts := map[string][]string{
			"process-transaction": {"/transfers", "/accounts", "/transfers/batch", "/"},
			"generate-invoice":    {"/invoices", "/invoices/batch", "/subscriptions", "/"},
			"capture-payment":     {"/payments", "/accounts/" + a.account + "/payment-methods", "/"},
			"handle-webhook":      {"/sandbox", "/stripe", "/"},
			"aggregate-report":    {"/admin/rebuild", "/"},
		}
		signingKey := []byte(strings.Split(e.secret("event-signing-key"), ",")[0])
		whSecret := []byte(e.secret("sandbox-webhook-secret"))
		for f, paths := range posts {
			for _, p := range paths {
				r := e.req(http.MethodPost, "/function/"+f+p, big, "Idempotency-Key", uuid.NewString())
				if r.status != http.StatusRequestEntityTooLarge {
					t.Errorf("%s %s with 1 MiB + 17 bytes: %s", f, p, r)
				}
				for name, body := range map[string][]byte{"100k [": deepArr, `100k {"a":`: deepObj} {
					hdrs := []string{"Idempotency-Key", uuid.NewString()}
					switch p {
					case "/": // signed, so the body is parsed
						hdrs = append(hdrs, "Content-Type", events.ContentTypeStructured, events.SignatureHeader, events.SignDelivery(signingKey, time.Now(), f, body))
					case "/sandbox":
						hdrs = append(hdrs, sandbox.SignatureHeader, sandbox.Sign(whSecret, time.Now(), body))
					}
					r := e.req(http.MethodPost, "/function/"+f+p, body, hdrs...)
					if r.status != http.StatusBadRequest && !(r.status >= 400 && r.status < 500 && p == "/stripe") {
						t.Errorf("%s %s with %s: %s", f, p, name, r)
					}
				}
			}
		}
		for _, f := range fnNames {
			if r := e.req(http.MethodGet, "/function/"+f+"/_/health", nil); r.status != http.StatusOK {
				t.Errorf("%s health after the attack: %s", f, r)
			}
		}
	})

	t.Run("SQL metacharacters round-trip or are refused, never a 5xx", func(t *testing.T) {
		metas := []string{
			"'; DROP TABLE accounts; --", "Robert'); DROP TABLE invoices;--", "' OR '1'='1", `\'"%_$1;`,
			"nul\x00byte", "\x00", "ünïcødé 漢字 🚀 \u202e evil", "\u0000", "%00%27",
		}
		tablesBefore := e.scalar(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`)
		accountsBefore := e.scalar(`SELECT count(*) FROM accounts`)
		var fivexx []string
		check := func(what string, r response) {
			if r.status >= 500 {
				fivexx = append(fivexx, what+": "+r.String())
			}
		}
		for _, m := range metas {
			q := url.QueryEscape(m)
			// process-transaction
			r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
				"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": a.account, "amount": 1, "currency": "USD",
				"description": m, "reference_id": m, "metadata": map[string]any{"note": m, m: "key"}}, "Idempotency-Key", uuid.NewString())
			check("POST /transfers", r)
			if r.status == http.StatusCreated {
				got := e.req(http.MethodGet, "/function/process-transaction/transfers/"+str(r.body, "id"), nil).body
				md, _ := got["metadata"].(map[string]any)
				if str(got, "description") != m || str(got, "reference_id") != m || str(md, "note") != m || str(md, m) != "key" {
					t.Errorf("transfer %q did not round-trip: %v", m, got)
				}
				e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{"from_account_id": a.account,
					"to_account_number": "SYS-EXTERNAL-USD", "amount": 1, "currency": "USD"}, "Idempotency-Key", uuid.NewString())
			}
			r = e.req(http.MethodPost, "/function/process-transaction/accounts", map[string]any{"currency": "USD", "user_id": uuid.NewString(),
				"account_number": m}, "Idempotency-Key", uuid.NewString())
			check("POST /accounts number", r)
			if r.status < 300 {
				t.Errorf("account number %q accepted: %s", m, r)
			}
			r = e.req(http.MethodPost, "/function/process-transaction/accounts", map[string]any{"currency": "USD", "user_id": uuid.NewString(),
				"metadata": map[string]any{"note": m}}, "Idempotency-Key", uuid.NewString())
			check("POST /accounts metadata", r)
			if r.status == http.StatusCreated {
				got := e.req(http.MethodGet, "/function/process-transaction/accounts/"+str(r.body, "id"), nil).body
				if md, _ := got["metadata"].(map[string]any); str(md, "note") != m {
					t.Errorf("account metadata %q did not round-trip: %v", m, got)
				}
			}
			for _, p := range []string{"/accounts?user_id=" + q, "/accounts?cursor=" + q, "/accounts/" + url.PathEscape(m),
				"/accounts/" + a.account + "/transactions?status=" + q, "/accounts/" + a.account + "/transactions?from=" + q,
				"/accounts/" + a.account + "/transactions?cursor=" + q, "/transfers/" + url.PathEscape(m)} {
				check("GET "+p, e.req(http.MethodGet, "/function/process-transaction"+p, nil))
			}
			// generate-invoice
			r = e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
				"account_id": a.account, "user_id": a.user, "currency": "USD", "memo": m, "metadata": map[string]any{"note": m},
				"customer":   map[string]any{"name": m, "tax_id": m, "address": map[string]any{"line1": m, "city": m}},
				"line_items": []any{map[string]any{"description": m, "unit_amount": 100}}}, "Idempotency-Key", uuid.NewString())
			check("POST /invoices", r)
			if r.status == http.StatusCreated {
				got := e.req(http.MethodGet, "/function/generate-invoice/invoices/"+str(r.body, "id"), nil).body
				cust, _ := got["customer"].(map[string]any)
				lines, _ := got["lines"].([]any)
				if str(got, "memo") != m || str(cust, "name") != m || len(lines) != 1 || str(lines[0].(map[string]any), "description") != m {
					t.Errorf("invoice %q did not round-trip: %v", m, got)
				}
				check("GET .html", e.req(http.MethodGet, "/function/generate-invoice/invoices/"+str(r.body, "id")+".html", nil))
				check("GET .pdf", e.req(http.MethodGet, "/function/generate-invoice/invoices/"+str(r.body, "id")+".pdf", nil))
			}
			for _, p := range []string{"/invoices?status=" + q, "/invoices?account_id=" + q, "/invoices?due_before=" + q, "/invoices?cursor=" + q,
				"/invoices/" + url.PathEscape(m), "/subscriptions?status=" + q, "/tax-rates/" + url.PathEscape(m), "/coupons/" + url.PathEscape(m),
				"/invoice-requests/" + url.PathEscape(m)} {
				check("GET "+p, e.req(http.MethodGet, "/function/generate-invoice"+p, nil))
			}
			check("POST /coupons", e.req(http.MethodPost, "/function/generate-invoice/coupons", map[string]any{"id": m, "name": m, "percent_off": "10"}, "Idempotency-Key", uuid.NewString()))
			// capture-payment
			r = e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
				"account_id": a.account, "user_id": a.user, "amount": 100, "currency": "USD", "description": m, "metadata": map[string]any{"note": m}},
				"Idempotency-Key", uuid.NewString())
			check("POST /payments", r)
			if r.status == http.StatusCreated {
				got := e.req(http.MethodGet, "/function/capture-payment/payments/"+str(r.body, "id"), nil).body
				if md, _ := got["metadata"].(map[string]any); str(got, "description") != m || str(md, "note") != m {
					t.Errorf("payment %q did not round-trip: %v", m, got)
				}
			}
			check("POST /payment-methods", e.req(http.MethodPost, "/function/capture-payment/accounts/"+a.account+"/payment-methods",
				map[string]any{"user_id": a.user, "token": m, "brand": m}, "Idempotency-Key", uuid.NewString()))
			check("POST /payments pm", e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
				"account_id": a.account, "user_id": a.user, "amount": 100, "currency": "USD", "payment_method": m, "confirm": true},
				"Idempotency-Key", uuid.NewString()))
			for _, p := range []string{"/payments?status=" + q, "/payments?account_id=" + q, "/payments?invoice_id=" + q, "/payments?cursor=" + q,
				"/payments/" + url.PathEscape(m), "/refunds/" + url.PathEscape(m)} {
				check("GET "+p, e.req(http.MethodGet, "/function/capture-payment"+p, nil))
			}
			// handle-webhook: a validly signed webhook full of metacharacters
			wh, _ := json.Marshal(map[string]any{"id": "evt_" + m, "object": "event", "type": m, "created": time.Now().Unix(),
				"data": map[string]any{"object": map[string]any{"id": "pi_" + m, "object": "payment_intent", "currency": m, "status": m,
					"metadata": map[string]any{"billfn_payment_id": m}}}})
			check("POST /sandbox", e.req(http.MethodPost, "/function/handle-webhook/sandbox", wh, "Authorization", "",
				sandbox.SignatureHeader, sandbox.Sign([]byte(e.secret("sandbox-webhook-secret")), time.Now(), wh)))
			for _, p := range []string{"/events?gateway=" + q, "/events?type=" + q, "/events?status=" + q, "/events?cursor=" + q, "/events/" + url.PathEscape(m)} {
				check("GET "+p, e.req(http.MethodGet, "/function/handle-webhook"+p, nil))
			}
			// aggregate-report
			for _, p := range []string{"/reports/summary?currency=" + q, "/reports/summary?account_id=" + q, "/reports/summary?from=" + q,
				"/reports/timeseries?metric=" + q + "&granularity=day", "/reports/timeseries?metric=transfer.posted&granularity=" + q,
				"/reports/timeseries?metric=transfer.posted&granularity=day&dim=" + q, "/reports/aging?as_of=" + q,
				"/reports/mrr?month=" + q, "/reports/reconciliation?date=" + q, "/reports/reconciliation?cursor=" + q,
				"/reports/top-accounts?currency=USD&cursor=" + q, "/reports/summary.csv?currency=" + q, "/admin/check?from=" + q} {
				check("GET "+p, e.req(http.MethodGet, "/function/aggregate-report"+p, nil))
			}
		}
		for _, f := range fivexx {
			t.Errorf("5xx: %s", f)
		}
		if n := e.scalar(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n != tablesBefore {
			t.Errorf("%d tables, %d before", n, tablesBefore)
		}
		if n := e.scalar(`SELECT count(*) FROM accounts`); n < accountsBefore {
			t.Errorf("accounts went from %d to %d", accountsBefore, n)
		}
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("hostile amounts and unknown currencies are refused", func(t *testing.T) {
		amounts := []string{"9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e30", "-1", "0", `"12"`, "12.5", "true", `{}`}
		// A's own payment, hold and invoice are the targets (B's must not move).
		own := victimOf(t, e, a, third)
		ownBefore := own.state(e)
		var problems []string
		expect4xx := func(what string, r response) {
			if r.status < 400 || r.status >= 500 {
				problems = append(problems, fmt.Sprintf("%s: %s", what, r))
			}
		}
		aTok := "Bearer " + a.token
		for _, amt := range amounts {
			expect4xx("customer transfer "+amt, e.req(http.MethodPost, "/function/process-transaction/transfers",
				fmt.Sprintf(`{"from_account_id":%q,"to_account_id":%q,"amount":%s,"currency":"USD"}`, a.account, b.account, amt),
				"Authorization", aTok, "Idempotency-Key", uuid.NewString()))
			expect4xx("payment "+amt, e.req(http.MethodPost, "/function/capture-payment/payments",
				fmt.Sprintf(`{"account_id":%q,"user_id":%q,"amount":%s,"currency":"USD","payment_method":"pm_card_visa","confirm":true}`, a.account, a.user, amt),
				"Idempotency-Key", uuid.NewString()))
			expect4xx("capture "+amt, e.req(http.MethodPost, "/function/capture-payment/payments/"+own.authorized+"/capture",
				fmt.Sprintf(`{"amount":%s}`, amt), "Idempotency-Key", uuid.NewString()))
			expect4xx("refund "+amt, e.req(http.MethodPost, "/function/capture-payment/payments/"+own.captured+"/refunds",
				fmt.Sprintf(`{"amount":%s}`, amt), "Idempotency-Key", uuid.NewString()))
			expect4xx("invoice pay "+amt, e.req(http.MethodPost, "/function/generate-invoice/invoices/"+own.openInvoice+"/pay",
				fmt.Sprintf(`{"amount":%s}`, amt), "Idempotency-Key", uuid.NewString()))
			expect4xx("hold capture "+amt, e.req(http.MethodPost, "/function/process-transaction/transfers/"+own.hold+"/capture",
				fmt.Sprintf(`{"amount":%s}`, amt), "Idempotency-Key", uuid.NewString()))
		}
		for _, amt := range []string{"9223372036854775808", "1e30", `"12"`, "12.5"} {
			expect4xx("invoice unit_amount "+amt, e.req(http.MethodPost, "/function/generate-invoice/invoices",
				fmt.Sprintf(`{"account_id":%q,"user_id":%q,"currency":"USD","line_items":[{"description":"x","unit_amount":%s}]}`, a.account, a.user, amt),
				"Idempotency-Key", uuid.NewString()))
		}
		expect4xx("invoice amount overflow", e.req(http.MethodPost, "/function/generate-invoice/invoices",
			fmt.Sprintf(`{"account_id":%q,"user_id":%q,"currency":"USD","line_items":[{"description":"x","quantity":"2","unit_amount":9223372036854775807}]}`, a.account, a.user),
			"Idempotency-Key", uuid.NewString()))
		// A balance that would overflow int64 (in a currency of its own).
		big := e.newCustomer("CHF")
		r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{"from_account_number": "SYS-EXTERNAL-CHF",
			"to_account_id": big.account, "amount": int64(9223372036854775807), "currency": "CHF"}, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusCreated {
			t.Logf("the largest amount: %s", r)
		}
		expect4xx("an overflowing balance", e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
			"from_account_number": "SYS-EXTERNAL-CHF", "to_account_id": big.account, "amount": 1, "currency": "CHF"}, "Idempotency-Key", uuid.NewString()))

		for _, cur := range []string{"ABC", "ZZZ", "US", "USDD", "€€€", "", "usd'--", "123"} {
			expect4xx("account in "+cur, e.req(http.MethodPost, "/function/process-transaction/accounts",
				map[string]any{"currency": cur, "user_id": uuid.NewString()}, "Idempotency-Key", uuid.NewString()))
			expect4xx("transfer in "+cur, e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
				"from_account_number": "SYS-EXTERNAL-" + cur, "to_account_id": a.account, "amount": 1, "currency": cur}, "Idempotency-Key", uuid.NewString()))
			expect4xx("invoice in "+cur, e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
				"account_id": a.account, "user_id": a.user, "currency": cur, "line_items": []any{map[string]any{"description": "x", "unit_amount": 1}}},
				"Idempotency-Key", uuid.NewString()))
			expect4xx("payment in "+cur, e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
				"account_id": a.account, "user_id": a.user, "amount": 100, "currency": cur, "payment_method": "pm_card_visa", "confirm": true},
				"Idempotency-Key", uuid.NewString()))
			if cur != "" {
				expect4xx("report in "+cur, e.req(http.MethodGet, "/function/aggregate-report/reports/summary?currency="+url.QueryEscape(cur), nil))
			}
		}
		for _, p := range problems {
			t.Errorf("accepted or failed: %s", p)
		}
		if after := own.state(e); after != ownBefore {
			t.Errorf("A's resources changed:\nbefore %+v\nafter  %+v", ownBefore, after)
		}
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})
}

// attacksCardNumbers: card numbers are refused and never logged.
func attacksCardNumbers(t *testing.T, s *attackScene) {
	e, a := s.e, s.a
	t.Run("a card number in a payment body is refused and never logged", func(t *testing.T) {
		pans := []string{"4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "5555555555554444", "378282246310005", "4000056655665556"}
		var bodies []string
		for _, pan := range pans {
			bodies = append(bodies,
				fmt.Sprintf(`{"account_id":%q,"amount":100,"currency":"USD","description":"card %s","confirm":true}`, a.account, pan),
				fmt.Sprintf(`{"account_id":%q,"amount":100,"currency":"USD","metadata":{"card":%q}}`, a.account, pan),
				fmt.Sprintf(`{"account_id":%q,"amount":100,"currency":"USD","payment_method":%q,"confirm":true}`, a.account, pan),
			)
		}
		bodies = append(bodies,
			fmt.Sprintf(`{"account_id":%q,"amount":100,"currency":"USD","card":4242424242424242}`, a.account),
			fmt.Sprintf(`{"account_id":%q,"amount":100,"currency":"USD","description":"\u0034\u0032\u0034\u0032424242424242"}`, a.account))
		for _, body := range bodies {
			for _, path := range []string{"/payments", "/accounts/" + a.account + "/payment-methods"} {
				r := e.req(http.MethodPost, "/function/capture-payment"+path, body, "Authorization", "Bearer "+a.token, "Idempotency-Key", uuid.NewString())
				if r.status != http.StatusUnprocessableEntity || str(r.body, "code") != "card_number_rejected" {
					t.Errorf("%s %s: %s", path, body, r)
				}
				if strings.Contains(string(r.raw), "4242") || strings.Contains(string(r.raw), "5555") {
					t.Errorf("the answer echoes the number: %s", r)
				}
			}
		}
		// Every line any process of the stack wrote (debug level) is searched.
		digits := regexp.MustCompile(`[0-9]`)
		out := e.out.String()
		for _, pan := range pans {
			if strings.Contains(out, pan) {
				t.Errorf("the stack's output holds %q", pan)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			compact := strings.NewReplacer(" ", "", "-", "", `\u0034`, "4", `\u0032`, "2").Replace(line)
			for _, pan := range pans {
				if bare := strings.NewReplacer(" ", "", "-", "").Replace(pan); strings.Contains(compact, bare) {
					t.Errorf("a log line holds a card number: %.200s", line)
				}
			}
		}
		if !digits.MatchString(out) || !strings.Contains(out, `"level":"DEBUG"`) {
			t.Errorf("the stack's output was not captured at debug level")
		}
	})
}

// attacksAfterwards: after every class: no function died, the ledger holds, the victim is untouched.
func attacksAfterwards(t *testing.T, s *attackScene) {
	e, v, before, pids := s.e, s.v, s.before, s.pids
	t.Run("afterwards: no function died, the ledger holds", func(t *testing.T) {
		for _, f := range fnNames {
			if p := e.pidOf(f); p != pids[f] {
				t.Errorf("%s was restarted (pid %d, was %d)", f, p, pids[f])
			}
		}
		if strings.Contains(e.out.String(), "panic") {
			t.Errorf("a panic in the stack's output")
		}
		e.quiesce(60 * time.Second)
		if p := e.ledgerProblems(); len(p) > 0 {
			t.Errorf("ledger: %v", p)
		}
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// mustEvent builds a CloudEvent from an outside source.
func mustEvent(t *testing.T, typ, subject string, data any) events.Event {
	t.Helper()
	ev, err := events.New(context.Background(), "attacker", typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// rawJWT assembles header.payload.signature by hand.
func rawJWT(header string, c jwt.MapClaims, sig string) string {
	return rawPart(json.RawMessage(header)) + "." + rawPart(c) + "." + sig
}

func rawPart(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// victim is everything customer B owns, made by an admin for B.
type victim struct {
	transfer, hold, draft, openInvoice, request, subscription string
	authorized, authorizedGW, captured, method                string
}

func victimOf(t *testing.T, e *e2e, b, third customer) victim {
	t.Helper()
	var v victim
	r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{"from_account_id": b.account,
		"to_account_id": third.account, "amount": 100, "currency": "USD"}, "Authorization", "Bearer "+b.token, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("B's transfer: %s", r)
	}
	v.transfer = str(r.body, "id")
	r = e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{"from_account_id": b.account,
		"to_account_id": third.account, "amount": 1000, "currency": "USD", "pending": true,
		"expires_at": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)}, "Authorization", "Bearer "+b.token, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("B's hold: %s", r)
	}
	v.hold = str(r.body, "id")
	inv := func(final bool) map[string]any {
		return map[string]any{"account_id": b.account, "user_id": b.user, "currency": "USD", "collection_method": "send_invoice",
			"line_items": []any{map[string]any{"description": "B's goods", "unit_amount": 12000}}, "auto_finalize": final}
	}
	r = e.req(http.MethodPost, "/function/generate-invoice/invoices", inv(false), "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("B's draft: %s", r)
	}
	v.draft = str(r.body, "id")
	r = e.req(http.MethodPost, "/function/generate-invoice/invoices", inv(true), "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("B's invoice: %s", r)
	}
	v.openInvoice = str(r.body, "id")
	r = e.req(http.MethodPost, "/function/generate-invoice/invoices", inv(true), "Idempotency-Key", uuid.NewString(), "Prefer", "respond-async")
	if r.status != http.StatusAccepted {
		t.Fatalf("B's invoice request: %s", r)
	}
	v.request = str(r.body, "id")
	r = e.req(http.MethodPost, "/function/generate-invoice/subscriptions", map[string]any{"account_id": b.account, "user_id": b.user,
		"plan":  map[string]any{"name": "B's plan", "amount": 900, "currency": "USD", "interval": "month"},
		"start": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "collection_method": "send_invoice"}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("B's subscription: %s", r)
	}
	v.subscription = str(r.body, "id")
	r = e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{"account_id": b.account, "user_id": b.user, "amount": 5000,
		"currency": "USD", "payment_method": "pm_card_visa", "capture_method": "manual", "confirm": true}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated || str(r.body, "status") != "requires_capture" {
		t.Fatalf("B's authorization: %s", r)
	}
	v.authorized, v.authorizedGW = str(r.body, "id"), str(r.body, "gateway_payment_id")
	r = e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{"account_id": b.account, "user_id": b.user, "amount": 3000,
		"currency": "USD", "payment_method": "pm_card_visa", "confirm": true}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated || str(r.body, "status") != "succeeded" {
		t.Fatalf("B's payment: %s", r)
	}
	v.captured = str(r.body, "id")
	r = e.req(http.MethodPost, "/function/capture-payment/accounts/"+b.account+"/payment-methods", map[string]any{"user_id": b.user,
		"token": "pm_card_mastercard", "brand": "mastercard", "last4": "4444"}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("B's payment method: %s", r)
	}
	v.method = str(r.body, "id")
	e.quiesce(60 * time.Second) // B's ledger postings and events settled
	return v
}

// victimState is what B would notice.
type victimState struct {
	Balance, Available                int64
	Hold, Draft, Open, Subscription   string
	Authorized, Captured              string
	Refunded, Methods, TransfersFromB int64
	DraftMemo                         string
}

func (v victim) state(e *e2e) victimState {
	get := func(path string) map[string]any { return e.req(http.MethodGet, path, nil).body }
	acct := get("/function/process-transaction/transfers/" + v.transfer)
	from := str(acct, "from_account_id")
	a := get("/function/process-transaction/accounts/" + from)
	draft := get("/function/generate-invoice/invoices/" + v.draft)
	captured := get("/function/capture-payment/payments/" + v.captured)
	return victimState{
		Balance: num(a, "balance"), Available: num(a, "available"),
		Hold:  str(get("/function/process-transaction/transfers/"+v.hold), "status"),
		Draft: str(draft, "status"), DraftMemo: str(draft, "memo"),
		Open:         str(get("/function/generate-invoice/invoices/"+v.openInvoice), "status") + fmt.Sprint(num(get("/function/generate-invoice/invoices/"+v.openInvoice), "amount_paid")),
		Subscription: str(get("/function/generate-invoice/subscriptions/"+v.subscription), "status"),
		Authorized:   str(get("/function/capture-payment/payments/"+v.authorized), "status"),
		Captured:     str(captured, "status"), Refunded: num(captured, "amount_refunded"),
		Methods: e.scalar(`SELECT count(*) FROM payment_methods WHERE id::text = $1`, v.method),
		// Refused attempts that depend on the balance are kept as rejected
		// (moving nothing, by design); anything else would be a change.
		TransfersFromB: e.scalar(`SELECT count(*) FROM transfers WHERE from_account_id::text = $1 AND status <> 'rejected'`, from),
	}
}

// leaks reports whether a list answered to A shows anything of B's.
func (v victim) leaks(raw string, b customer) bool {
	for _, id := range []string{b.account, v.draft, v.openInvoice, v.subscription, v.authorized, v.captured, v.method} {
		if strings.Contains(raw, id) {
			return true
		}
	}
	return false
}

// TestFunctionsListenOnlyWhereTheGatewayCallsThem: the gateway listens on
// loopback and calls every replica at 127.0.0.1:<its PORT>, so that is
// all a replica listens on — not every interface, where the network a
// laptop is on would reach each function's API and its /metrics beside
// the gateway. Proof per replica: 127.0.0.2:<PORT> is free (Linux refuses
// it while a socket listens on every address at that port).
func TestFunctionsListenOnlyWhereTheGatewayCallsThem(t *testing.T) {
	e := startStack(t, stackOptions{})
	bin := filepath.Join(e.runDir, "bin") + string(filepath.Separator)
	checked := map[string]bool{}
	for _, pid := range leftovers(e.marker) {
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		if !strings.HasPrefix(exe, bin) || filepath.Base(exe) == "kafka-trigger" {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err != nil {
			t.Fatalf("%s: %v", exe, err)
		}
		var port string
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("PORT=")); ok {
				port = string(v)
			}
		}
		if port == "" {
			t.Fatalf("%s (pid %d) has no PORT", exe, pid)
		}
		checked[filepath.Base(exe)] = true
		ln, err := net.Listen("tcp", "127.0.0.2:"+port)
		if err != nil {
			t.Errorf("%s (pid %d) listens on port %s of every interface, not only where the gateway calls it: %v", filepath.Base(exe), pid, port, err)
			continue
		}
		ln.Close()
	}
	if len(checked) < 5 {
		t.Fatalf("checked only %v", checked)
	}
}
