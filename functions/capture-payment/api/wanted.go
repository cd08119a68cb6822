package api

import (
	"context"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// wanted says which events of a delivery can change something here now
// (events.Receiver.Wanted). A gateway update about a payment it cannot
// move (payments.ChangesNothing: above all a gateway's repeated
// confirmation of a payment that succeeded) is acknowledged with no
// transaction and no processed_events row; the payments a delivery's
// updates name are read in one query, except those of payments this
// replica has seen terminal already (payments.Idle, whose comment argues
// why that fact is permanent), when the update changes nothing for them.
// Every other event is wanted: other types, an update it cannot decode, one about a payment it does not find
// (the handler parks it, as today). It is asked before the origin check
// (the receiver verifies only the proofs of the events wanted), so a
// forged update that changes nothing is ignored like a genuine one, and a
// wanted forgery is parked. Each answer depends on its event alone, as
// Wanted requires of an answer that makes an event unwanted.
func (s *API) wanted(ctx context.Context, evs []events.Event) ([]bool, error) {
	want := make([]bool, len(evs))
	updates := make([]events.GatewayUpdate, len(evs))
	named := make([]payments.PaymentName, len(evs)) // zero: not judged
	names := make([]payments.PaymentName, 0, len(evs))
	for i, ev := range evs {
		want[i] = true
		if ev.Type() != events.TypeGatewayUpdated || events.Decode(ev, &updates[i]) != nil {
			continue
		}
		if n, ok := payments.Named(updates[i]); ok {
			if s.idle.ChangesNothing(n, updates[i]) {
				want[i] = false // a terminal payment's, remembered (payments.Idle)
				continue
			}
			named[i], names = n, append(names, n)
		}
	}
	if len(names) == 0 {
		return want, nil
	}
	ps, err := s.store.PaymentsNamed(ctx, names)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*payments.Payment, len(ps))
	byObject := make(map[payments.PaymentName]*payments.Payment, len(ps))
	for _, p := range ps {
		s.idle.Put(p) // read outside any transaction: committed
		byID[p.ID] = p
		if p.Gateway != nil && p.GatewayPaymentID != nil {
			byObject[payments.PaymentName{Gateway: *p.Gateway, Object: *p.GatewayPaymentID}] = p
		}
	}
	for i, n := range named {
		var p *payments.Payment
		switch {
		case n.ID != "":
			p = byID[n.ID]
		case n.Object != "":
			p = byObject[n]
		default:
			continue
		}
		want[i] = !payments.ChangesNothing(p, updates[i])
	}
	return want, nil
}
