package rollup

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

var (
	t0   = time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	acct = "0a000000-0000-4000-8000-00000000000a"
	bcct = "0b000000-0000-4000-8000-00000000000b"
	user = "0c000000-0000-4000-8000-00000000000c"
	sub1 = "05000000-0000-4000-8000-000000000001"
	pay1 = "0e000000-0000-4000-8000-000000000001"
	inv1 = "01000000-0000-4000-8000-000000000001"
)

var seq int

func ev(typ string, at time.Time, data map[string]any) Event {
	seq++
	b, _ := json.Marshal(data)
	return Event{Source: "/functions/test", ID: fmt.Sprintf("e-%d", seq), Type: typ, Time: Micro(at), Data: b}
}

// day renders the day rollups as "metric dim currency = count/amount" and
// the account rollups as "acct:<first 2 chars> metric dim = count/amount".
func rendered(e *Effects) []string {
	var out []string
	for k, c := range e.Global {
		if k.Grain == Day {
			out = append(out, fmt.Sprintf("%s %s %s = %s", k.Metric, k.Dim, k.Currency, c))
		}
	}
	for k, c := range e.Accounts {
		out = append(out, fmt.Sprintf("acct:%s %s %s %s = %s", k.Account[:2], k.Metric, k.Dim, k.Currency, c))
	}
	slices.Sort(out)
	return out
}

func TestEveryEventTypeLandsInItsRollups(t *testing.T) {
	transferData := func(status string, amount int64, cur string, extra map[string]any) map[string]any {
		m := map[string]any{"id": "t1", "from_account_id": acct, "to_account_id": bcct, "amount": amount,
			"currency": cur, "status": status, "captured_amount": 0}
		maps.Copy(m, extra)
		return m
	}
	invoice := func(total, due int64) map[string]any {
		return map[string]any{"invoice_id": inv1, "account_id": acct, "currency": "EUR", "total": total,
			"amount_due": due, "amount_paid": total - due, "status": "open", "due_date": "2026-03-31"}
	}
	pay := func(amount, captured int64, extra map[string]any) map[string]any {
		m := map[string]any{"payment_id": pay1, "account_id": acct, "amount": amount, "amount_captured": captured,
			"currency": "USD", "gateway": "stripe"}
		maps.Copy(m, extra)
		return m
	}
	cases := []struct {
		name string
		evs  []Event
		want []string
	}{
		{"posted transfer: volume, sender and receiver",
			[]Event{ev(TransferPosted, t0, transferData("posted", 1050, "usd", nil))},
			[]string{"acct:0a transfer.posted  USD = 1/1050", "acct:0b transfer.received  USD = 1/1050", "transfer.posted  USD = 1/1050"}},
		{"rejected transfer: by reason",
			[]Event{ev(TransferRejected, t0, transferData("rejected", 500, "USD", map[string]any{"reject_reason": "insufficient_funds"}))},
			[]string{"acct:0a transfer.rejected insufficient_funds USD = 1/500", "transfer.rejected insufficient_funds USD = 1/500"}},
		{"rejected transfer with no valid currency: counted under XXX without volume",
			[]Event{ev(TransferRejected, t0, transferData("rejected", 500, "ZZZ", map[string]any{"reject_reason": "currency_mismatch"}))},
			[]string{"acct:0a transfer.rejected currency_mismatch XXX = 1/0", "transfer.rejected currency_mismatch XXX = 1/0"}},
		{"holds: created, captured (captured amount), voided, expired",
			[]Event{ev(HoldCreated, t0, transferData("held", 700, "USD", nil)),
				ev(HoldCaptured, t0, transferData("captured", 700, "USD", map[string]any{"captured_amount": 600})),
				ev(HoldVoided, t0, transferData("voided", 100, "USD", nil)),
				ev(HoldExpired, t0, transferData("expired", 50, "USD", nil))},
			[]string{"acct:0a hold.captured  USD = 1/600", "acct:0a hold.created  USD = 1/700", "acct:0a hold.expired  USD = 1/50",
				"acct:0a hold.voided  USD = 1/100", "hold.captured  USD = 1/600", "hold.created  USD = 1/700",
				"hold.expired  USD = 1/50", "hold.voided  USD = 1/100"}},
		{"account created: counted, ownership learnt",
			[]Event{ev(AccountCreated, t0, map[string]any{"id": acct, "user_id": user, "number": "ACC-1", "currency": "GBP"})},
			[]string{"account.created  GBP = 1/0", "acct:0a account.created  GBP = 1/0"}},
		{"account updated: ownership only",
			[]Event{ev(AccountUpdated, t0, map[string]any{"id": acct, "user_id": user, "number": "ACC-1", "currency": "GBP"})},
			nil},
		{"invoices: totals, overdue and uncollectible by amount due",
			[]Event{ev(InvoiceCreated, t0, invoice(12000, 12000)), ev(InvoiceFinalized, t0, invoice(12000, 12000)),
				ev(InvoiceOverdue, t0, invoice(12000, 9000)), ev(InvoiceUncollectible, t0, invoice(12000, 9000)),
				ev(InvoicePaid, t0, invoice(12000, 0)), ev(InvoiceVoided, t0, invoice(12000, 12000))},
			[]string{"acct:0a invoice.created  EUR = 1/12000", "acct:0a invoice.finalized  EUR = 1/12000",
				"acct:0a invoice.overdue  EUR = 1/9000", "acct:0a invoice.paid  EUR = 1/12000",
				"acct:0a invoice.uncollectible  EUR = 1/9000", "acct:0a invoice.voided  EUR = 1/12000",
				"invoice.created  EUR = 1/12000", "invoice.finalized  EUR = 1/12000", "invoice.overdue  EUR = 1/9000",
				"invoice.paid  EUR = 1/12000", "invoice.uncollectible  EUR = 1/9000", "invoice.voided  EUR = 1/12000"}},
		{"payments: first capture is the success, a later partial capture is not",
			[]Event{ev(PaymentCreated, t0, pay(1000, 0, nil)), ev(PaymentAuthorized, t0, pay(1000, 0, map[string]any{"amount_capturable": 1000})),
				ev(PaymentCaptured, t0, pay(600, 600, nil)), ev(PaymentCaptured, t0, pay(400, 1000, nil))},
			[]string{"acct:0a payment.authorized stripe USD = 1/1000", "acct:0a payment.captured stripe USD = 2/1000",
				"acct:0a payment.created stripe USD = 1/1000", "acct:0a payment.succeeded stripe USD = 1/600",
				"payment.authorized stripe USD = 1/1000", "payment.captured stripe USD = 2/1000",
				"payment.created stripe USD = 1/1000", "payment.succeeded stripe USD = 1/600"}},
		{"payments: failures by decline code, cancellations",
			[]Event{ev(PaymentFailed, t0, pay(1000, 0, map[string]any{"decline_code": "card_declined"})),
				ev(PaymentFailed, t0, pay(1000, 0, map[string]any{"decline_code": nil, "failure_reason": "expired_card"})),
				ev(PaymentCanceled, t0, pay(1000, 0, map[string]any{"gateway": ""}))},
			[]string{"acct:0a payment.canceled unknown USD = 1/1000", "acct:0a payment.decline stripe|card_declined USD = 1/1000",
				"acct:0a payment.decline stripe|expired_card USD = 1/1000", "acct:0a payment.failed stripe USD = 2/2000",
				"payment.canceled unknown USD = 1/1000", "payment.decline stripe|card_declined USD = 1/1000",
				"payment.decline stripe|expired_card USD = 1/1000", "payment.failed stripe USD = 2/2000"}},
		{"refunds by gateway",
			[]Event{ev(RefundSucceeded, t0, map[string]any{"refund_id": "re_1", "payment_id": pay1, "account_id": acct, "amount": 300, "currency": "USD", "gateway": "sandbox"}),
				ev(RefundFailed, t0, map[string]any{"refund_id": "re_2", "payment_id": pay1, "account_id": acct, "amount": 200, "currency": "USD", "gateway": "sandbox"})},
			[]string{"acct:0a refund.failed sandbox USD = 1/200", "acct:0a refund.succeeded sandbox USD = 1/300",
				"refund.failed sandbox USD = 1/200", "refund.succeeded sandbox USD = 1/300"}},
		{"disputes count once per dispute; other gateway updates count nothing",
			[]Event{ev(PaymentCreated, t0, pay(1000, 0, nil)),
				ev(GatewayUpdated, t0, map[string]any{"gateway": "stripe", "object_type": "dispute", "gateway_object_id": "dp_1", "payment_id": pay1, "status": "disputed", "amount": 1000, "currency": "USD"}),
				ev(GatewayUpdated, t0, map[string]any{"gateway": "stripe", "object_type": "dispute", "gateway_object_id": "dp_1", "payment_id": pay1, "status": "disputed", "amount": 1000, "currency": "USD"}),
				ev(GatewayUpdated, t0, map[string]any{"gateway": "stripe", "object_type": "payment_intent", "gateway_object_id": "pi_1", "payment_id": pay1, "status": "succeeded", "amount": 1000, "currency": "USD"}),
				// capture-payment's own report of the same dispute
				ev(PaymentDisputed, t0, pay(1000, 1000, map[string]any{"disputed_at": t0}))},
			[]string{"acct:0a dispute.opened stripe USD = 1/1000", "acct:0a payment.created stripe USD = 1/1000",
				"dispute.opened stripe USD = 1/1000", "payment.created stripe USD = 1/1000"}},
		{"a dispute reported by capture-payment first counts once, with its account",
			[]Event{ev(PaymentDisputed, t0, pay(1000, 800, map[string]any{"disputed_at": t0, "gateway": "sandbox"})),
				ev(GatewayUpdated, t0, map[string]any{"gateway": "sandbox", "object_type": "dispute", "gateway_object_id": "dp_7", "payment_id": pay1, "status": "disputed", "amount": 800, "currency": "USD"})},
			[]string{"acct:0a dispute.opened sandbox USD = 1/800", "dispute.opened sandbox USD = 1/800"}},
		{"subscriptions: new, expansion, contraction, churn, reactivation",
			[]Event{
				ev(SubscriptionCreated, t0, sub(sub1, "active", 2900)),
				ev(SubscriptionUpdated, t0.Add(time.Minute), sub(sub1, "active", 4900)),
				ev(SubscriptionUpdated, t0.Add(2*time.Minute), sub(sub1, "active", 1900)),
				ev(SubscriptionCanceled, t0.Add(3*time.Minute), sub(sub1, "active", 1900)),
				ev(SubscriptionUpdated, t0.Add(4*time.Minute), sub(sub1, "active", 1900))},
			[]string{"acct:0a mrr.churned  USD = 1/1900", "acct:0a mrr.contraction  USD = 1/3000", "acct:0a mrr.expansion  USD = 1/2000",
				"acct:0a mrr.new  USD = 1/2900", "acct:0a mrr.reactivation  USD = 1/1900", "acct:0a subscription.canceled  USD = 1/0",
				"acct:0a subscription.created  USD = 1/0",
				"mrr.churned  USD = 1/1900", "mrr.contraction  USD = 1/3000", "mrr.expansion  USD = 1/2000", "mrr.new  USD = 1/2900",
				"mrr.reactivation  USD = 1/1900", "subscription.canceled  USD = 1/0", "subscription.created  USD = 1/0"}},
		{"a trial pays nothing until it turns active",
			[]Event{ev(SubscriptionCreated, t0, sub(sub1, "trialing", 2900)), ev(SubscriptionUpdated, t0.Add(time.Hour), sub(sub1, "active", 2900))},
			[]string{"acct:0a mrr.new  USD = 1/2900", "acct:0a subscription.created  USD = 1/0", "mrr.new  USD = 1/2900", "subscription.created  USD = 1/0"}},
		{"an older subscription update arriving late moves nothing",
			[]Event{ev(SubscriptionUpdated, t0.Add(time.Hour), sub(sub1, "active", 4900)), ev(SubscriptionCreated, t0, sub(sub1, "active", 2900))},
			[]string{"acct:0a mrr.new  USD = 1/4900", "acct:0a subscription.created  USD = 1/0", "mrr.new  USD = 1/4900", "subscription.created  USD = 1/0"}},
		{"unknown types are ignored",
			[]Event{ev("billfn.notification.requested", t0, map[string]any{"kind": "invoice_overdue"})},
			nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := Aggregator{State: NewState(), Effects: NewEffects()}
			for _, e := range c.evs {
				if err := a.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
			got := rendered(a.Effects)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("rollups:\n got  %q\n want %q", got, c.want)
			}
			// Every global fact is in the hour rollups too, with the same totals.
			hours, days := Sum{}, Sum{}
			for k, v := range a.Effects.Global {
				if k.Grain == Hour {
					hours = Sum{hours.Count + v.Count, hours.Amount.Add(v.Amount)}
				} else {
					days = Sum{days.Count + v.Count, days.Amount.Add(v.Amount)}
				}
			}
			if hours != days {
				t.Errorf("hour totals %v != day totals %v", hours, days)
			}
		})
	}
}

func sub(id, status string, mrr int64) map[string]any {
	return map[string]any{"subscription_id": id, "account_id": acct, "status": status, "mrr": mrr, "currency": "USD",
		"plan": map[string]any{"amount": mrr, "currency": "USD", "interval": "month", "interval_count": 1}}
}

func TestBadEventsArePermanentFailures(t *testing.T) {
	cases := map[string]Event{
		"not JSON":                 {Type: TransferPosted, Data: []byte(`{`), Time: t0},
		"amount as a string":       ev(TransferPosted, t0, map[string]any{"amount": "10.50", "currency": "USD", "from_account_id": acct, "to_account_id": bcct}),
		"unknown currency":         ev(TransferPosted, t0, map[string]any{"amount": 1, "currency": "DOGE", "from_account_id": acct, "to_account_id": bcct}),
		"negative posted amount":   ev(TransferPosted, t0, map[string]any{"amount": -1, "currency": "USD", "from_account_id": acct, "to_account_id": bcct}),
		"account id not a UUID":    ev(TransferPosted, t0, map[string]any{"amount": 1, "currency": "USD", "from_account_id": "acc-1", "to_account_id": bcct}),
		"invoice without account":  ev(InvoicePaid, t0, map[string]any{"invoice_id": inv1, "currency": "USD", "total": 1}),
		"subscription negative":    ev(SubscriptionCreated, t0, map[string]any{"subscription_id": sub1, "account_id": acct, "mrr": -5, "currency": "USD", "status": "active"}),
		"account without owner":    ev(AccountCreated, t0, map[string]any{"id": acct, "currency": "USD"}),
		"payment without currency": ev(PaymentCaptured, t0, map[string]any{"payment_id": pay1, "account_id": acct, "amount": 1}),
		"unapplied, forged source": unappliedEv("/functions/capture-payment", t0, pay1, acct, 500, "USD", "overpayment"),
		"unapplied, no account":    unappliedEv(UnappliedSource, t0, pay1, "", 500, "USD", "overpayment"),
		"unapplied, negative":      unappliedEv(UnappliedSource, t0, pay1, acct, -500, "USD", "overpayment"),
		"unapplied, bad currency":  unappliedEv(UnappliedSource, t0, pay1, acct, 500, "DOGE", "overpayment"),
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			a := Aggregator{State: NewState(), Effects: NewEffects()}
			err := a.Apply(e)
			if err == nil || !events.IsPermanent(err) {
				t.Fatalf("Apply = %v, want a permanent error", err)
			}
		})
	}
}

// A rollup row adds valid int64 amounts without a bound of its own: anyone
// may have a transfer of math.MaxInt64 rejected and counted, and the next
// fact of its row must still count (it was refused as an overflow, parked,
// and lost to the day's reports).
func TestRollupSumsBeyondInt64AreCounted(t *testing.T) {
	a := Aggregator{State: NewState(), Effects: NewEffects()}
	for _, amount := range []int64{1 << 62, 1 << 62, math.MaxInt64, math.MaxInt64} {
		data := map[string]any{"amount": amount, "currency": "USD", "from_account_id": acct, "to_account_id": bcct}
		if err := a.Apply(ev(TransferPosted, t0, data)); err != nil {
			t.Fatalf("transfer of %d: %v", amount, err)
		}
	}
	want := []string{"acct:0a transfer.posted  USD = 4/27670116110564327422", "acct:0b transfer.received  USD = 4/27670116110564327422",
		"transfer.posted  USD = 4/27670116110564327422"}
	if got := rendered(a.Effects); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWideAddsAndFormatsBeyondInt64(t *testing.T) {
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	for _, s := range []string{"0", "-1", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
		"-9223372036854775809", "18446744073709551616", "-18446744073709551616", "-18446744073709551615",
		"170141183460469231731687303715884105727", "-170141183460469231731687303715884105728"} {
		w, err := ParseWide(s)
		if err != nil || w.String() != s || w.Big().String() != s {
			t.Errorf("ParseWide(%s) = %v (%v), formats as %s", s, w, err, w)
		}
		b, _ := new(big.Int).SetString(s, 10)
		for _, v := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64} {
			want := new(big.Int).Add(b, big.NewInt(v))
			if !want.IsInt64() && new(big.Int).Abs(want).Cmp(new(big.Int).Lsh(two64, 62)) > 0 {
				continue // beyond 128 bits: no sum of int64s gets there
			}
			if got := w.AddInt64(v).Big(); got.Cmp(want) != 0 {
				t.Errorf("%s + %d = %s, want %s", s, v, got, want)
			}
		}
	}
	for _, s := range []string{"170141183460469231731687303715884105728", "1.5", "", "x"} {
		if _, err := ParseWide(s); err == nil {
			t.Errorf("ParseWide(%q) succeeded", s)
		}
	}
	if v, ok := WideOf(math.MinInt64).Int64(); !ok || v != math.MinInt64 {
		t.Error("MinInt64 does not fit in int64")
	}
	if _, ok := WideOf(math.MaxInt64).AddInt64(1).Int64(); ok {
		t.Error("MaxInt64 + 1 fits in int64")
	}
}

func TestReconciliationRowsComeFromCapturesRefundsAndTheirPostings(t *testing.T) {
	a := Aggregator{State: NewState(), Effects: NewEffects()}
	md := func(kind string) map[string]any {
		return map[string]any{"kind": kind, "payment_id": pay1, "gateway": "stripe"}
	}
	for _, e := range []Event{
		ev(PaymentCaptured, t0, map[string]any{"payment_id": pay1, "account_id": acct, "amount": 1000, "amount_captured": 1000, "currency": "USD", "gateway": "stripe", "invoice_id": inv1}),
		ev(TransferPosted, t0, map[string]any{"id": "t-cap", "from_account_id": bcct, "to_account_id": acct, "amount": 1000, "currency": "USD", "metadata": md("payment_capture")}),
		ev(TransferPosted, t0, map[string]any{"id": "t-set", "from_account_id": acct, "to_account_id": bcct, "amount": 1000, "currency": "USD", "metadata": md("invoice_settlement")}),
		ev(RefundSucceeded, t0, map[string]any{"refund_id": "re_1", "payment_id": pay1, "account_id": acct, "amount": 300, "currency": "USD", "gateway": "stripe"}),
		ev(TransferRejected, t0, map[string]any{"id": "t-ref", "from_account_id": acct, "to_account_id": bcct, "amount": 300, "currency": "USD", "reject_reason": "account_frozen", "metadata": md("refund")}),
		// A refund reserved with a hold: its capture is the ledger side.
		ev(HoldCaptured, t0, map[string]any{"id": "h-ref", "from_account_id": acct, "to_account_id": bcct, "amount": 200, "captured_amount": 200, "currency": "USD", "metadata": md("refund")}),
		ev(HoldVoided, t0, map[string]any{"id": "h-voi", "from_account_id": acct, "to_account_id": bcct, "amount": 100, "captured_amount": 0, "currency": "USD", "metadata": md("refund")}),
	} {
		if err := a.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range a.Effects.Recon {
		got = append(got, fmt.Sprintf("%s %s %s %s %d %s %s", r.Side, r.Kind, r.Gateway, r.PaymentID[:2], r.Amount, r.Status, r.Ref[:min(5, len(r.Ref))]))
	}
	want := []string{"gateway capture stripe 0e 1000 succeeded e-", "ledger capture stripe 0e 1000 posted t-cap",
		"gateway refund stripe 0e 300 succeeded re_1", "ledger refund stripe 0e 300 rejected t-ref", "ledger refund stripe 0e 200 posted h-ref"}
	for i := range want {
		want[i] = strings.TrimSpace(want[i])
		if i < len(got) && strings.HasPrefix(got[i], want[i]) {
			continue
		}
		t.Fatalf("recon rows:\n got  %q\n want %q", got, want)
	}
	if len(got) != len(want) {
		t.Fatalf("recon rows:\n got  %q\n want %q (invoice_settlement moves no gateway cash)", got, want)
	}
	if len(a.Effects.InvoicePayments) != 1 || a.Effects.InvoicePayments[0].Amount != 1000 || a.Effects.InvoicePayments[0].InvoiceID != inv1 {
		t.Fatalf("invoice payments = %+v", a.Effects.InvoicePayments)
	}
}

func TestRangedEffectsKeepOnlyTheirRange(t *testing.T) {
	e := NewEffects()
	r := Range{From: DayStart(t0), To: DayStart(t0).AddDate(0, 0, 1)}
	e.Keep = r.Contains
	a := Aggregator{State: NewState(), Effects: e}
	data := map[string]any{"amount": 5, "currency": "USD", "from_account_id": acct, "to_account_id": bcct}
	for _, at := range []time.Time{t0, t0.AddDate(0, 0, 1), t0.AddDate(0, 0, -1)} {
		if err := a.Apply(ev(TransferPosted, at, data)); err != nil {
			t.Fatal(err)
		}
	}
	got := rendered(e)
	want := []string{"acct:0a transfer.posted  USD = 1/5", "acct:0b transfer.received  USD = 1/5", "transfer.posted  USD = 1/5"}
	if strings.Join(got, "|") != strings.Join(want, "|") || len(e.Days) != 1 {
		t.Fatalf("got %q (days %v), want %q", got, e.Days, want)
	}
}

// unappliedEv is generate-invoice's billfn.invoice.payment_unapplied.
func unappliedEv(source string, at time.Time, payment, account string, amount int64, cur, reason string) Event {
	e := ev(PaymentUnapplied, at, map[string]any{"payment_id": payment, "invoice_id": inv1, "account_id": account,
		"user_id": user, "amount": amount, "currency": cur, "reason": reason, "invoice_status": "paid",
		"invoice_total": 12000, "invoice_amount_paid": 12000, "invoice_currency": "USD"})
	e.Source, e.Subject = source, payment
	return e
}

// Money a payment brought that its invoice did not need is a figure of its
// own, by reason and per account credited, with a row for the
// reconciliation; only generate-invoice may report it.
func TestUnappliedPaymentsCountByReasonFromGenerateInvoiceOnly(t *testing.T) {
	pay2 := "0e000000-0000-4000-8000-000000000002"
	a := Aggregator{State: NewState(), Effects: NewEffects()}
	noID := unappliedEv(UnappliedSource, t0, pay2, bcct, 300, "eur", "currency_mismatch")
	noID.Data = []byte(strings.Replace(string(noID.Data), `"payment_id":"`+pay2+`",`, "", 1)) // the subject names it
	for _, e := range []Event{
		unappliedEv(UnappliedSource, t0, pay1, acct, 500, "USD", "overpayment"),
		unappliedEv(UnappliedSource, t0.Add(time.Minute), pay1, acct, 1200, "USD", "invoice_paid"),
		noID,
	} {
		if err := a.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"acct:0a payment.unapplied invoice_paid USD = 1/1200", "acct:0a payment.unapplied overpayment USD = 1/500",
		"acct:0b payment.unapplied currency_mismatch EUR = 1/300",
		"payment.unapplied currency_mismatch EUR = 1/300", "payment.unapplied invoice_paid USD = 1/1200", "payment.unapplied overpayment USD = 1/500"}
	if got := rendered(a.Effects); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rollups:\n got  %q\n want %q", got, want)
	}
	var rows []string
	for _, u := range a.Effects.Unapplied {
		rows = append(rows, fmt.Sprintf("%s %s %s %s %s %d %s %s", u.PaymentID[:4], u.InvoiceID[:2], u.AccountID[:2], u.UserID[:2],
			u.Currency, u.Amount, u.Reason, u.InvoiceStatus))
	}
	wantRows := []string{"0e00 01 0a 0c USD 500 overpayment paid", "0e00 01 0a 0c USD 1200 invoice_paid paid",
		"0e00 01 0b 0c EUR 300 currency_mismatch paid"}
	if strings.Join(rows, "\n") != strings.Join(wantRows, "\n") || a.Effects.Unapplied[2].PaymentID != pay2 {
		t.Fatalf("unapplied rows:\n got  %q\n want %q", rows, wantRows)
	}
	if len(a.Effects.Recon) != 0 || len(a.Effects.Days) != 1 {
		t.Fatalf("no gateway or ledger cash moved: recon %v, days %v", a.Effects.Recon, a.Effects.Days)
	}

	// Anyone else saying so is refused, permanently (parked), and counts nothing.
	for _, src := range []string{"/functions/capture-payment", "/functions/generate-invoice/", "generate-invoice", ""} {
		b := Aggregator{State: NewState(), Effects: NewEffects()}
		err := b.Apply(unappliedEv(src, t0, pay1, acct, 500, "USD", "overpayment"))
		if err == nil || !events.IsPermanent(err) || len(b.Effects.Global) != 0 || len(b.Effects.Unapplied) != 0 {
			t.Fatalf("forged source %q: %v, effects %v %v", src, err, b.Effects.Global, b.Effects.Unapplied)
		}
	}
}
