package api

import (
	"net/http"

	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
)

// Routes is every route with who may call it, its rate-limit class and
// the kind of resource each reference it takes names (the attack test puts
// another customer's resource of that kind in each).
func (s *API) Routes() []platform.Route {
	idem := s.d.Idempotency.Middleware(true)
	write := func(h http.HandlerFunc) http.Handler { return idem(h) } // Mux refuses card numbers before (shared/pan)
	payment := map[string]string{"{id}": "payment"}
	account := map[string]string{"{id}": "account"}
	method := map[string]string{"{id}": "account", "{method}": "payment-method"}
	return []platform.Route{
		// createPayment takes its Idempotency-Key's claim itself: in the
		// intent's statement when it can (idempotency.Store.Deferred).
		{Pattern: "POST /payments", Access: platform.Customer, Class: platform.Money, Handler: s.d.Idempotency.Deferred(true)(http.HandlerFunc(s.createPayment)),
			Refs: map[string]string{"account_id": "account", "payment_method": "payment-method", "invoice_id": "invoice"}},
		{Pattern: "GET /payments", Access: platform.Customer, Handler: http.HandlerFunc(s.listPayments),
			Refs: map[string]string{"?account_id": "account"}},
		{Pattern: "GET /payments/{id}", Access: platform.Customer, Handler: http.HandlerFunc(s.getPayment), Refs: payment},
		{Pattern: "POST /payments/{id}/confirm", Access: platform.Customer, Class: platform.Money, Handler: write(s.confirmPayment),
			Refs: map[string]string{"{id}": "payment", "payment_method": "payment-method"}},
		{Pattern: "POST /payments/{id}/capture", Access: platform.Customer, Class: platform.Money, Handler: write(s.capturePayment), Refs: payment},
		{Pattern: "POST /payments/{id}/cancel", Access: platform.Customer, Class: platform.Write, Handler: write(s.cancelPayment), Refs: payment},
		{Pattern: "POST /payments/{id}/refunds", Access: platform.Privileged, Class: platform.Money, Handler: write(s.createRefund), Refs: payment},
		{Pattern: "GET /payments/{id}/refunds", Access: platform.Customer, Handler: http.HandlerFunc(s.listRefunds), Refs: payment},
		{Pattern: "GET /refunds/{id}", Access: platform.Customer, Handler: http.HandlerFunc(s.getRefund), Refs: map[string]string{"{id}": "refund"}},
		{Pattern: "POST /accounts/{id}/payment-methods", Access: platform.Customer, Class: platform.Write, Handler: write(s.createMethod), Refs: account},
		{Pattern: "GET /accounts/{id}/payment-methods", Access: platform.Customer, Handler: http.HandlerFunc(s.listMethods), Refs: account},
		{Pattern: "DELETE /accounts/{id}/payment-methods/{method}", Access: platform.Customer, Class: platform.Write,
			Handler: s.d.Idempotency.Middleware(false)(http.HandlerFunc(s.deleteMethod)), Refs: method},
		{Pattern: "POST /accounts/{id}/payment-methods/{method}/default", Access: platform.Customer, Class: platform.Write,
			Handler: write(s.defaultMethod), Refs: method},
		{Pattern: "POST /{$}", Access: platform.Delivery, Handler: http.HandlerFunc(s.events), Refs: map[string]string{}},
	}
}

// events receives CloudEvents and ticks, then publishes what they wrote.
// A delivery kicks the outbox publisher only when its handlers wrote
// outbox events (store.Tx.Emit, the function's one writer of them, through
// outbox.Writer.Add, which notes it in the delivery's outbox.Written): most deliveries write none (a repeated confirmation, an update
// about an object the payment no longer uses, an invoice's facts), and
// each kick would run a publisher pass that finds nothing, a read-only
// commit (0.126 per webhook, issue 20). A tick publishes what it wrote
// itself (Tick ends with the publisher's Sweep), as do the flows that
// commit their own transactions (payments.Service.Kick).
func (s *API) events(w http.ResponseWriter, r *http.Request) {
	var wrote outbox.Written
	s.d.Events.ServeHTTP(w, r.WithContext(outbox.Tracking(r.Context(), &wrote)))
	if wrote.Load() {
		s.d.Publisher.Kick()
	}
}
