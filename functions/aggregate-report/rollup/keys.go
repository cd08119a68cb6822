package rollup

import (
	"cmp"
	"maps"
	"slices"
)

// commutative types neither read nor write state: their effects are
// additions (and rows of their own), whatever the order.
var commutative = map[string]bool{
	TransferPosted: true, TransferRejected: true,
	HoldCreated: true, HoldCaptured: true, HoldVoided: true, HoldExpired: true,
	PaymentUnapplied: true,
}

// Commutative reports whether every event of evs is of a commutative type:
// such a batch may run beside others (the writers' lock held shared).
func Commutative(evs []Event) bool {
	for _, ev := range evs {
		if !commutative[ev.Type] {
			return false
		}
	}
	return true
}

// Keys are the state rows a batch needs.
type Keys struct {
	Accounts, Subscriptions, Payments, Invoices []string
	DisputeGateways, DisputeObjects             []string
	Refunds                                     []string // refund ids as given
}

// Needs lists the state rows the events read, using the same fields as Apply.
func Needs(evs []Event) Keys {
	var k Keys
	seen := map[string]bool{}
	addTo := func(list *[]string, kind, id string) {
		if id = canonicalID(id); id != "" && !seen[kind+id] {
			seen[kind+id] = true
			*list = append(*list, id)
		}
	}
	for _, ev := range evs {
		if !kinds[ev.Type] {
			continue
		}
		var d struct {
			ID             string  `json:"id"`
			RefundID       string  `json:"refund_id"`
			InvoiceID      *string `json:"invoice_id"`
			SubscriptionID string  `json:"subscription_id"`
			PaymentID      *string `json:"payment_id"`
		}
		_ = dataJSON.Unmarshal(ev.Data, &d) // a bad event fails in Apply
		switch ev.Type {
		case AccountCreated, AccountUpdated:
			id := d.ID
			if id == "" {
				id = ev.Subject
			}
			addTo(&k.Accounts, "a", id)
		case SubscriptionCreated, SubscriptionUpdated, SubscriptionCanceled:
			id := d.SubscriptionID
			if id == "" {
				id = ev.Subject
			}
			addTo(&k.Subscriptions, "s", id)
		case InvoiceCreated, InvoiceFinalized, InvoicePaid, InvoiceVoided, InvoiceOverdue, InvoiceUncollectible:
			id := str(d.InvoiceID)
			if id == "" {
				id = ev.Subject
			}
			addTo(&k.Invoices, "i", id)
		case PaymentCreated, PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentCanceled:
			id := str(d.PaymentID)
			if id == "" {
				id = ev.Subject
			}
			addTo(&k.Payments, "p", id)
		case RefundSucceeded, RefundFailed:
			addTo(&k.Payments, "p", str(d.PaymentID))
			if d.RefundID != "" && !seen["r"+d.RefundID] {
				seen["r"+d.RefundID] = true
				k.Refunds = append(k.Refunds, d.RefundID)
			}
		case GatewayUpdated:
			var g gatewayUpdateData
			if dataJSON.Unmarshal(ev.Data, &g) != nil || (g.ObjectType != "dispute" && g.Status != "disputed") {
				continue
			}
			addTo(&k.Payments, "p", str(g.PaymentID))
			dk := disputeKey(gatewayName(g.Gateway), g.ObjectType, g.GatewayObjectID, g.GatewayPaymentID, str(g.PaymentID))
			k.DisputeGateways = append(k.DisputeGateways, dk.Gateway)
			k.DisputeObjects = append(k.DisputeObjects, dk.ObjectID)
		case PaymentDisputed:
			var p paymentData
			if dataJSON.Unmarshal(ev.Data, &p) != nil {
				continue
			}
			if p.PaymentID == "" {
				p.PaymentID = ev.Subject
			}
			addTo(&k.Payments, "p", p.PaymentID)
			dk := disputeKey(gatewayName(p.Gateway), "", "", "", p.PaymentID)
			k.DisputeGateways = append(k.DisputeGateways, dk.Gateway)
			k.DisputeObjects = append(k.DisputeObjects, dk.ObjectID)
		}
	}
	return k
}

// StateRows are the keys of the state rows to write, each kind sorted.
type StateRows struct {
	Accounts, Subscriptions, Payments, Invoices, Refunds []string
	Disputes                                             []DisputeKey
}

// Changed lists the state rows to write: with all every row (a rebuild
// that emptied the state tables), otherwise the dirty ones; each kind in
// key order, so concurrent writers lock rows in one order.
func (s *State) Changed(all bool) StateRows {
	sorted := func(ids []string) []string { slices.Sort(ids); return ids }
	r := StateRows{
		Accounts:      sorted(pick(all, s.dirtyAccounts, slices.Collect(maps.Keys(s.Accounts)))),
		Subscriptions: sorted(pick(all, s.dirtySubscriptions, slices.Collect(maps.Keys(s.Subscriptions)))),
		Payments:      sorted(pick(all, s.dirtyPayments, slices.Collect(maps.Keys(s.Payments)))),
		Invoices:      sorted(pick(all, s.dirtyInvoices, slices.Collect(maps.Keys(s.Invoices)))),
		Refunds:       sorted(pick(all, s.dirtyRefunds, slices.Collect(maps.Keys(s.Refunds)))),
		Disputes:      pick(all, s.dirtyDisputes, slices.Collect(maps.Keys(s.Disputes))),
	}
	slices.SortFunc(r.Disputes, func(a, b DisputeKey) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.ObjectID, b.ObjectID))
	})
	return r
}

func pick[K comparable](all bool, m map[K]bool, everything []K) []K {
	if all {
		return everything
	}
	return slices.Collect(maps.Keys(m))
}
