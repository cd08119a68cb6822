package api

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

// stubGateway is a configured gateway that is never called.
type stubGateway struct{ payments.Gateway }

// FuzzCreatePaymentBody: a POST /payments body is decoded and checked as
// createPayment does, for a customer and for a service. It is either a 4xx
// problem, or a payment to create whose ids are canonical UUIDs (what the
// uuid columns take, and what ownership is compared with), whose amount is
// in range, currency canonical, capture method known, payment method
// well-formed and present when confirming, and whose texts are in limits.
func FuzzCreatePaymentBody(f *testing.F) {
	f.Add([]byte(`{"account_id":"6f1c7e0a-0000-4000-8000-000000000001","user_id":"8f14e45f-ceea-467a-9575-6b9d1b2ce1a7","amount":1050,"currency":"usd","payment_method":"pm_card_visa","confirm":true}`))
	f.Add([]byte(`{"account_id":"{6F1C7E0A-0000-4000-8000-000000000001}","amount":1,"currency":"JPY","capture_method":"manual","invoice_id":"urn:uuid:6f1c7e0a-0000-4000-8000-000000000009"}`))
	f.Add([]byte(`{"amount":999999999999999,"currency":"XXX","metadata":{"":"x"}}`))
	s := &API{svc: &payments.Service{Gateways: map[string]payments.Gateway{payments.GatewaySandbox: stubGateway{}, payments.GatewayStripe: stubGateway{}}}}
	customer := auth.Principal{Subject: "8f14e45f-ceea-467a-9575-6b9d1b2ce1a7", Role: auth.RoleCustomer}
	service := auth.Principal{Subject: "c9f0f895-fb98-4b91-a0e9-2f5e4e3a2b1c", Role: auth.RoleService}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, pr := range []auth.Principal{customer, service} {
			var req createRequest
			err := httpx.Unmarshal(body, &req)
			var in payments.CreateInput
			if err == nil {
				in, err = s.parseCreate(pr, &req)
			}
			if err != nil {
				var pe *problem.Error
				if !errors.As(err, &pe) || Statuses.Status(err) < 400 || Statuses.Status(err) >= 500 {
					t.Fatalf("body %q: %v is not a 4xx problem", body, err)
				}
				continue
			}
			canonical := func(field, s string) {
				if id, err := uuid.Parse(s); err != nil || id.String() != s {
					t.Fatalf("body %q: %s %q is not a canonical UUID", body, field, s)
				}
			}
			canonical("account_id", in.AccountID)
			if in.UserID != "" {
				canonical("user_id", in.UserID) // only a claim: authorizeAccount compares it with the owner
			}
			if in.InvoiceID != nil {
				canonical("invoice_id", *in.InvoiceID)
			}
			if in.Amount <= 0 || in.Amount > maxAmount {
				t.Fatalf("body %q: amount %d", body, in.Amount)
			}
			if c, err := money.ParseCurrency(string(in.Currency)); err != nil || c != in.Currency || !in.Currency.Valid() {
				t.Fatalf("body %q: currency %q", body, in.Currency)
			}
			if in.CaptureMethod != payments.CaptureAutomatic && in.CaptureMethod != payments.CaptureManual {
				t.Fatalf("body %q: capture method %q", body, in.CaptureMethod)
			}
			if in.PaymentMethod != "" {
				if _, err := uuid.Parse(in.PaymentMethod); err == nil {
					canonical("payment_method", in.PaymentMethod)
				} else if !payments.ValidToken(in.PaymentMethod) {
					t.Fatalf("body %q: payment method %q", body, in.PaymentMethod)
				}
			} else if in.Confirm {
				t.Fatalf("body %q: confirm without a payment method", body)
			}
			if in.Gateway != "" && s.svc.Gateways[in.Gateway] == nil {
				t.Fatalf("body %q: gateway %q", body, in.Gateway)
			}
			if utf8.RuneCountInString(in.Description) > 1000 || len(in.Metadata) > 50 || in.Metadata == nil {
				t.Fatalf("body %q: description or metadata out of limits", body)
			}
		}
	})
}
