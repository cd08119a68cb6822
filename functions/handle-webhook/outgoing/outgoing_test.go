package outgoing

import (
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// The example of the Standard Webhooks specification's reference
// libraries (standard-webhooks/standard-webhooks, libraries/*): what their
// verifiers accept, Sign makes.
func TestSignMatchesTheStandardWebhooksExample(t *testing.T) {
	got := Sign([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestPatterns(t *testing.T) {
	for p, want := range map[string]bool{
		"billfn.invoice.*": true, "billfn.invoice.paid": true, "billfn.refund.*": true, "billfn.hold.created": true,
		"billfn.invoice.requested": false, "billfn.transaction.requested": false, "billfn.payment.gateway_updated": false,
		"billfn.*": false, "*": false, "billfn.nothing.*": false, "billfn.invoice.pa*": false, "": false,
	} {
		if got := KnownPattern(p); got != want {
			t.Errorf("KnownPattern(%q) = %v", p, got)
		}
	}
	if !Matches([]string{"billfn.invoice.*"}, events.TypeInvoicePaid) || Matches([]string{"billfn.invoice.*"}, events.TypePaymentCaptured) ||
		!Matches([]string{"billfn.payment.captured"}, events.TypePaymentCaptured) {
		t.Fatal("Matches")
	}
	subs := [][]string{{"billfn.refund.succeeded"}, {"billfn.invoice.*"}}
	if !AnyWants(subs, events.TypeInvoicePaid) || AnyWants(subs, events.TypePaymentCaptured) || AnyWants(nil, events.TypeInvoicePaid) {
		t.Fatal("AnyWants")
	}
}

func TestScheduleSpansAboutThreeDays(t *testing.T) {
	if Schedule[0] != 5*time.Second || Schedule[1] != 5*time.Minute || Schedule[4] != 5*time.Hour {
		t.Fatalf("schedule %v", Schedule)
	}
	if w := Window(); w < 66*time.Hour || w > 72*time.Hour {
		t.Fatalf("window %s", w)
	}
	now := time.Unix(0, 0)
	d := &Delivery{ID: "d"}
	for i := 0; i <= len(Schedule); i++ {
		reason := Record(d, Outcome{Status: 500}, now)
		if (reason != nil) != (i == len(Schedule)) {
			t.Fatalf("attempt %d: reason %v, status %s", d.Attempts, reason, d.Status)
		}
	}
	if d.Status != Failed || d.Attempts != len(Schedule)+1 {
		t.Fatalf("%+v", d)
	}
}

func TestRotationKeepsThePreviousSecretFor24Hours(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	e := &Endpoint{}
	e.SetSecrets(NewSecret(), "")
	old := e.CurrentSecret()
	e.Rotate(now)
	if s := e.Secrets(now.Add(RotationOverlap - time.Second)); len(s) != 2 || s[1] != old || !strings.HasPrefix(s[0], SecretPrefix) {
		t.Fatalf("during the overlap %v", s)
	}
	if s := e.Secrets(now.Add(RotationOverlap)); len(s) != 1 || s[0] == old {
		t.Fatalf("after the overlap %v", s)
	}
}
