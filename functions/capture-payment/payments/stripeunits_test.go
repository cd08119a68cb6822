package payments

import (
	"slices"
	"testing"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/money"
)

// Stripe counts a few currencies in other units than ISO 4217 (ISK in
// hundredths, MGA in whole ariary), and billfn sends ISO minor units
// without converting: 500 ISK would have been charged as 5 ISK, 500.00 MGA
// as 50,000 MGA, with no error from Stripe. Such a currency is not routed
// to Stripe: the next gateway of its route takes it, and asked for Stripe
// (by name or by a saved Stripe method) it is currency_not_supported.
func TestStripeIsNotAskedToChargeACurrencyItCountsInOtherUnits(t *testing.T) {
	s := &Service{Routing: Routes{"*": {GatewayStripe, GatewaySandbox}, "MGA": {GatewayStripe}}}
	for _, tc := range []struct {
		cur       money.Currency
		requested string
		m         method
		want      []string
		code      apperr.Code
	}{
		{cur: "USD", want: []string{GatewayStripe, GatewaySandbox}},
		{cur: "JPY", want: []string{GatewayStripe, GatewaySandbox}},
		{cur: "ISK", want: []string{GatewaySandbox}},
		{cur: "MGA", code: CodeNoRoute},
		{cur: "ISK", requested: GatewayStripe, code: CodeNoRoute},
		{cur: "ISK", m: method{token: "pm_1", gateway: GatewayStripe}, code: CodeNoRoute},
	} {
		got, err := s.plan(tc.cur, 1000, tc.requested, tc.m)
		if apperr.CodeOf(err) != tc.code || (tc.code == "" && (err != nil || !slices.Equal(got, tc.want))) {
			t.Errorf("%s (requested %q, method %+v): %v %v, want %v %q", tc.cur, tc.requested, tc.m, got, err, tc.want, tc.code)
		}
	}
}
