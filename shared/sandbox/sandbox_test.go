package sandbox_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/sandbox"
)

func TestSignedEventsVerifyWithEveryActiveSecret(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body, err := sandbox.NewEvent("evt_sbx_1", "payment_intent.succeeded", now, sandbox.PaymentIntent{
		ID: "pi_sbx_1", Object: "payment_intent", Amount: 1050, AmountReceived: 1050, Currency: "usd", Status: "succeeded",
		Metadata: map[string]string{sandbox.MetadataPaymentID: "p1"}})
	if err != nil {
		t.Fatal(err)
	}
	header := sandbox.Sign([]byte("old"), now, body)
	secrets := sandbox.Secrets(" new , old ,")
	if len(secrets) != 2 {
		t.Fatalf("secrets %q", secrets)
	}
	if err := sandbox.Verify(secrets, header, body, now.Add(time.Minute), sandbox.DefaultTolerance); err != nil {
		t.Fatalf("rotation: %v", err)
	}
	for name, c := range map[string]struct {
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		"tampered":  {header, append([]byte{' '}, body...), now, events.ErrBadSignature},
		"stale":     {header, body, now.Add(6 * time.Minute), events.ErrStaleSignature},
		"future":    {header, body, now.Add(-6 * time.Minute), events.ErrStaleSignature},
		"missing":   {"", body, now, events.ErrNoSignature},
		"malformed": {"v1", body, now, events.ErrMalformedSigHead},
	} {
		if err := sandbox.Verify(secrets, c.header, c.body, c.at, sandbox.DefaultTolerance); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestTheEventIsStripesShape(t *testing.T) {
	body, _ := sandbox.NewEvent("evt_sbx_2", "payment_intent.payment_failed", time.Unix(1_800_000_000, 0), sandbox.PaymentIntent{
		ID: "pi_sbx_2", Object: "payment_intent", Amount: 500, Currency: "eur", Status: "requires_payment_method",
		Metadata:         map[string]string{sandbox.MetadataPaymentID: "p2"},
		LastPaymentError: &sandbox.PaymentError{Type: "card_error", Code: "card_declined", DeclineCode: "insufficient_funds"}})
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	obj := raw["data"].(map[string]any)["object"].(map[string]any)
	for _, k := range []string{"id", "object", "amount", "amount_capturable", "amount_received", "currency", "status", "metadata", "last_payment_error"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("data.object lacks %q", k)
		}
	}
	if raw["object"] != "event" || raw["created"] != float64(1_800_000_000) || raw["type"] != "payment_intent.payment_failed" {
		t.Fatalf("envelope %v", raw)
	}
	var ev sandbox.Event
	var o sandbox.Object
	if json.Unmarshal(body, &ev) != nil || json.Unmarshal(ev.Data.Object, &o) != nil || o.LastPaymentError.DeclineCode != "insufficient_funds" {
		t.Fatalf("round trip: %+v", o)
	}
}

func TestExpandableIDsDecode(t *testing.T) {
	var o struct {
		A, B, C sandbox.ID
	}
	if err := json.Unmarshal([]byte(`{"A":"pi_1","B":{"id":"pi_2","object":"payment_intent"},"C":null}`), &o); err != nil {
		t.Fatal(err)
	}
	if o.A != "pi_1" || o.B != "pi_2" || o.C != "" {
		t.Fatalf("%+v", o)
	}
}
