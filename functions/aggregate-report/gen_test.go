package main

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// world is a small economy that emits the events of every function:
// accounts, transfers, invoices, subscriptions, payments with captures that
// the ledger posts, refunds, disputes.
type world struct {
	t        testing.TB
	rng      *rand.Rand
	accounts []string
	users    []string
	subs     map[string]int64 // subscription → current MRR
	subAcct  map[string]string
	invoices []string
	invAcct  map[string]string
	payments []string
	payAcct  map[string]string
	clearing string
}

func newWorld(t testing.TB, seed uint64, nAccounts int) *world {
	w := &world{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), subs: map[string]int64{},
		subAcct: map[string]string{}, invAcct: map[string]string{}, payAcct: map[string]string{},
		clearing: "c1ea0000-0000-4000-8000-000000000001"}
	for i := 0; i < nAccounts; i++ {
		w.accounts = append(w.accounts, id())
		w.users = append(w.users, id())
	}
	return w
}

func (w *world) pick(list []string) string { return list[w.rng.IntN(len(list))] }

// events returns n events spread over days starting at start, in time
// order, beginning with the accounts' creation.
func (w *world) events(n int, start time.Time, days int) []events.Event {
	t := w.t
	var out []events.Event
	out = append(out, account(t, start, w.clearing, "00000000-0000-0000-0000-000000000000", "SYS-CLEARING-USD", "USD"))
	for i, a := range w.accounts {
		out = append(out, account(t, start, a, w.users[i], fmt.Sprintf("ACC-%04d", i), "USD"))
	}
	span := time.Duration(days) * 24 * time.Hour
	gateways := []string{"stripe", "sandbox"}
	for len(out) < n {
		at := start.Add(time.Duration(w.rng.Int64N(int64(span))))
		a := w.pick(w.accounts)
		cur := "USD"
		if w.rng.IntN(10) == 0 {
			cur = "EUR"
		}
		switch k := w.rng.IntN(100); {
		case k < 55:
			out = append(out, transfer(t, at, a, w.pick(w.accounts), 100+w.rng.Int64N(50_000), cur, "posted"))
		case k < 60:
			out = append(out, transfer(t, at, a, w.pick(w.accounts), 100+w.rng.Int64N(50_000), cur, []string{"insufficient_funds", "account_frozen"}[w.rng.IntN(2)]))
		case k < 63:
			out = append(out, hold(t, at, []string{"billfn.hold.created", "billfn.hold.captured", "billfn.hold.voided", "billfn.hold.expired"}[w.rng.IntN(4)], a, 1000, 800, cur))
		case k < 70:
			inv := id()
			w.invoices = append(w.invoices, inv)
			w.invAcct[inv] = a
			due := at.AddDate(0, 0, 15-w.rng.IntN(60)).Format(time.DateOnly)
			total := 1000 + w.rng.Int64N(20_000)
			out = append(out, invoice(t, at, "created", invoiceFields{id: inv, account: a, cur: "USD", status: "draft", due: due, total: total, dueAmount: total}),
				invoice(t, at.Add(time.Minute), "finalized", invoiceFields{id: inv, account: a, cur: "USD", status: "open", due: due, total: total, dueAmount: total}))
			switch w.rng.IntN(4) {
			case 0:
				out = append(out, invoice(t, at.Add(48*time.Hour), "paid", invoiceFields{id: inv, account: a, cur: "USD", status: "paid", due: due, total: total, paid: total}))
			case 1:
				out = append(out, invoice(t, at.Add(72*time.Hour), "overdue", invoiceFields{id: inv, account: a, cur: "USD", status: "open", due: due, total: total, dueAmount: total}))
			case 2:
				out = append(out, invoice(t, at.Add(time.Hour), "voided", invoiceFields{id: inv, account: a, cur: "USD", status: "void", due: due, total: total, dueAmount: total}))
			}
		case k < 76:
			s := ""
			for cand := range w.subs {
				if w.rng.IntN(3) == 0 {
					s = cand
					break
				}
			}
			if s == "" || w.rng.IntN(3) == 0 {
				s = id()
				w.subAcct[s] = a
				w.subs[s] = 900 + w.rng.Int64N(10_000)
				out = append(out, subscription(t, at, "created", s, a, []string{"active", "trialing"}[w.rng.IntN(2)], w.subs[s], "USD"))
			} else if w.rng.IntN(4) == 0 {
				out = append(out, subscription(t, at, "canceled", s, w.subAcct[s], "canceled", w.subs[s], "USD"))
			} else {
				w.subs[s] = 900 + w.rng.Int64N(10_000)
				out = append(out, subscription(t, at, "updated", s, w.subAcct[s], "active", w.subs[s], "USD"))
			}
		case k < 92:
			p := id()
			gw := gateways[w.rng.IntN(2)]
			amount := 500 + w.rng.Int64N(30_000)
			f := paymentFields{id: p, account: a, cur: "USD", gateway: gw, amount: amount}
			if len(w.invoices) > 0 && w.rng.IntN(2) == 0 {
				f.invoice = w.pick(w.invoices)
			}
			out = append(out, payment(t, at, "created", f))
			if w.rng.IntN(5) == 0 {
				f.decline = []string{"card_declined", "insufficient_funds", "expired_card"}[w.rng.IntN(3)]
				out = append(out, payment(t, at.Add(time.Second), "failed", f))
				break
			}
			f.captured = amount
			out = append(out, payment(t, at.Add(time.Second), "captured", f))
			w.payments = append(w.payments, p)
			w.payAcct[p] = a
			// the ledger posts the capture moments later, almost always right
			if w.rng.IntN(40) != 0 {
				out = append(out, transfer(t, at.Add(3*time.Second), w.clearing, a, amount, "USD", "posted", withMeta("payment_capture", p, gw)))
			}
			if w.rng.IntN(6) == 0 {
				r := amount / 2
				out = append(out, refund(t, at.Add(time.Hour), "succeeded", "re_"+p[:8], p, a, r, "USD", gw),
					transfer(t, at.Add(time.Hour+time.Second), a, w.clearing, r, "USD", "posted", withMeta("refund", p, gw)))
			}
		default:
			if len(w.payments) > 0 {
				p := w.pick(w.payments)
				out = append(out, dispute(t, at, "stripe", "dp_"+p[:8], p, 1000, "USD"))
			}
		}
	}
	return out
}

// unapplied returns generate-invoice's billfn.invoice.payment_unapplied for
// every fifth payment captured in evs (money its invoice did not need),
// moments after its capture. It draws nothing from the world's random
// numbers, so the events of a seed stay what they were.
func (w *world) unapplied(evs []events.Event) []events.Event {
	if len(w.invoices) == 0 {
		return nil
	}
	reasons := []string{"invoice_paid", "invoice_void", "overpayment", "currency_mismatch"}
	var out []events.Event
	n := 0
	for _, ev := range evs {
		if ev.Type() != "billfn.payment.captured" {
			continue
		}
		if n++; n%5 != 0 {
			continue
		}
		p := ev.Subject()
		cur := "USD"
		if n%20 == 0 {
			cur = "EUR"
		}
		out = append(out, unapplied(w.t, "generate-invoice", ev.Time().Add(2*time.Second), p, w.invoices[n%len(w.invoices)],
			w.payAcct[p], int64(100+n), cur, reasons[n/5%len(reasons)]))
	}
	return out
}

// shuffled returns evs in random order, some delivered twice.
func (w *world) shuffled(evs []events.Event) []events.Event {
	out := append([]events.Event(nil), evs...)
	for i := 0; i < len(evs)/20; i++ {
		out = append(out, evs[w.rng.IntN(len(evs))])
	}
	w.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// deliverInBatches posts evs in batches of up to size.
func (g *rig) deliverInBatches(evs []events.Event, size int) {
	for i := 0; i < len(evs); i += size {
		g.deliver(evs[i:min(i+size, len(evs))]...)
	}
}
