package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v83/webhook"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/sandbox"
)

// stripeEvent is a Stripe event body of type typ about object.
func stripeEvent(typ string, object map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"id": "evt_" + uuid.NewString()[:12], "object": "event", "type": typ,
		"api_version": "2025-09-30.clover", "created": time.Now().Unix(), "livemode": false, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil}, "data": map[string]any{"object": object}})
	return b
}

// paymentIntent is a succeeded payment intent about billfn payment paymentID.
func paymentIntent(id, paymentID string, amount int64) map[string]any {
	return map[string]any{"id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
		"amount_received": amount, "currency": "usd", "status": "succeeded", "capture_method": "automatic",
		"metadata": map[string]any{sandbox.MetadataPaymentID: paymentID}, "last_payment_error": nil, "livemode": false}
}

// signStripe signs body as Stripe does, with stripe-go's own test helper.
func signStripe(body []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}

// refusals are the codes a signature check answers with; the api's status
// table maps each to 400 or 401 (TestEveryWebhookCodeHasItsStatus).
var refusals = map[apperr.Code]bool{CodeSignatureMissing: true, CodeSignatureMalformed: true,
	CodeSignatureInvalid: true, CodeTimestamp: true}

// The statuses and object types an update that billfn acts on may carry.
var (
	knownStatuses = map[string]bool{"succeeded": true, "requires_capture": true, "failed": true, "canceled": true,
		"processing": true, "requires_action": true, "refunded": true, "disputed": true}
	knownObjects = map[string]bool{"payment_intent": true, "charge": true, "refund": true, "dispute": true}
)

// FuzzNormalize runs a verified body through Parse and Normalize as
// receive and replay do. The body is either refused with a
// webhook_payload_invalid problem (a 400), or stored: then every text column of
// webhook_events is valid text for Postgres (no NUL), the gateway's event
// time is one Postgres and JSON can hold, the update encodes (it is the
// event's data), its payment id is a UUID or absent, and an update billfn
// acts on has a known object type and status.
func FuzzNormalize(f *testing.F) {
	f.Add(false, stripeEvent("payment_intent.succeeded", paymentIntent("pi_1", uuid.NewString(), 1050)))
	f.Add(true, []byte(`{"id":"evt_1","object":"event","type":"charge.refund.updated","created":1800000000,"data":{"object":{"id":"re_1","object":"refund","status":"failed","payment_intent":{"id":"pi_1"}}}}`))
	f.Add(false, []byte(`{"id":"evt_1","object":"event","type":"x","data":{"object":{}}}`))
	f.Fuzz(func(t *testing.T, sandboxGW bool, body []byte) {
		gw := Stripe
		if sandboxGW {
			gw = Sandbox
		}
		p, err := Parse(body)
		if err != nil {
			var pe *apperr.Error
			if !errors.As(err, &pe) || pe.Code != CodePayload {
				t.Fatalf("Parse(%q): %v, want a %s problem", body, err, CodePayload)
			}
			return
		}
		u, handled := Normalize(gw, p)
		CheckPaymentID(&u)
		for col, s := range map[string]string{"gateway_event_id": u.GatewayEventID, "type": u.GatewayEventType,
			"object_type": u.ObjectType, "gateway_object_id": u.GatewayObjectID, "gateway_payment_id": u.GatewayPaymentID} {
			if strings.ContainsRune(s, 0) {
				t.Fatalf("%s %q holds a NUL, which no text column takes: the delivery could never be stored", col, s)
			}
		}
		if y := u.OccurredAt.Year(); y < 1970 || y > 9999 {
			t.Fatalf("occurred_at %v (created %d) cannot be stored nor encoded", u.OccurredAt, p.ev.Created)
		}
		if _, err := json.Marshal(u); err != nil {
			t.Fatalf("the update does not encode: %v", err)
		}
		if u.PaymentID != nil {
			if id, err := uuid.Parse(*u.PaymentID); err != nil || id.String() != *u.PaymentID {
				t.Fatalf("payment id %q kept: not a canonical UUID (the uuid column, and the payment map, want one)", *u.PaymentID)
			}
		}
		if u.Gateway != gw || u.GatewayEventID == "" || u.GatewayEventID != p.ev.ID || u.GatewayEventType != p.ev.Type {
			t.Fatalf("update %+v does not name its delivery %+v", u, p.ev)
		}
		if u.Currency != strings.ToUpper(u.Currency) {
			t.Fatalf("currency %q is not upper case", u.Currency)
		}
		if !handled {
			return
		}
		if !knownObjects[u.ObjectType] || !knownStatuses[u.Status] {
			t.Fatalf("handled update with object %q and status %q", u.ObjectType, u.Status)
		}
		if u.ObjectType == "payment_intent" && u.GatewayPaymentID != u.GatewayObjectID {
			t.Fatalf("a payment intent's update names payment %q", u.GatewayPaymentID)
		}
		if u.ObjectType == "refund" && (u.RefundID == nil) != (u.GatewayObjectID == "") {
			t.Fatalf("a refund's update: refund id %v, object %q", u.RefundID, u.GatewayObjectID)
		}
	})
}

// FuzzVerifyStripe: VerifyStripe accepts a Stripe-Signature only when one
// of its v1 values is the HMAC, with an active secret, of "<t>.<body>" for
// a t it carries within the tolerance; it accepts what Stripe signs with an
// active secret in time and nothing signed with another. Every refusal is
// a signature refusal (a 400 or 401 problem).
func FuzzVerifyStripe(f *testing.F) {
	body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_1", uuid.NewString(), 1050))
	f.Add(body, "", uint8(1), uint8(0), int64(1_800_000_000))
	f.Add(body, "t=1800000000,v1=zz,v0=abc", uint8(0), uint8(0), int64(0))
	f.Add(body, "t=1", uint8(3), uint8(1), int64(1_800_000_010))
	secrets := []string{"whsec_current", "whsec_previous"}
	now := time.Unix(1_800_000_000, 0)
	const tol = 5 * time.Minute
	inTime := func(sec int64) bool {
		d := now.Sub(time.Unix(sec, 0))
		return d <= tol && d >= -tol
	}
	f.Fuzz(func(t *testing.T, body []byte, header string, mode, k uint8, ts int64) {
		secret := "whsec_attacker"
		if int(k)%3 < len(secrets) {
			secret = secrets[int(k)%3]
		}
		signed := signStripe(body, secret, time.Unix(ts, 0))
		switch mode % 4 {
		case 1:
			header = signed
		case 2:
			header += "," + signed
		case 3:
			header = signed + "," + header
		}
		err := VerifyStripe(secrets, header, body, now, tol)
		if mode%4 == 1 {
			if want := int(k)%3 < len(secrets) && inTime(ts); (err == nil) != want {
				t.Fatalf("signed with secret %d at %d: %v, want accepted=%v", k%3, ts, err, want)
			}
		}
		if err != nil {
			var pe *apperr.Error
			if !errors.As(err, &pe) || !refusals[pe.Code] {
				t.Fatalf("refusal %v is not a signature refusal (a 400/401 problem)", err)
			}
			return
		}
		var tss []int64
		var sigs [][]byte
		for _, part := range strings.Split(header, ",") {
			k, v, _ := strings.Cut(part, "=")
			switch k {
			case "t":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					tss = append(tss, n)
				}
			case "v1":
				if b, err := hex.DecodeString(v); err == nil {
					sigs = append(sigs, b)
				}
			}
		}
		for _, sec := range tss {
			if !inTime(sec) {
				continue
			}
			for _, s := range secrets {
				m := hmac.New(sha256.New, []byte(s))
				m.Write([]byte(strconv.FormatInt(sec, 10) + "."))
				m.Write(body)
				for _, sig := range sigs {
					if hmac.Equal(sig, m.Sum(nil)) {
						return
					}
				}
			}
		}
		t.Fatalf("accepted %q for body %q, which no active secret signed in time", header, body)
	})
}
