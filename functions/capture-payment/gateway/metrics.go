package gateway

import (
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/prometheus/client_golang/prometheus"
)

// Calls times gateway calls by gateway, operation and result:
// ok, declined (a charge the gateway answered with a failed attempt),
// unknown (no answer: timeout, 5xx), error (the gateway certainly did
// nothing: failover material).
var Calls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "billfn_gateway_call_seconds",
	Help:    "Payment gateway calls by gateway, operation (charge, operation, refund) and result (ok, declined, unknown, error).",
	Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
}, []string{"gateway", "operation", "result"})

// Observe times one gateway call of operation op (charge, operation,
// refund) that started at start.
func Observe(gateway, op string, start time.Time, st payments.Status, err error) {
	result := "ok"
	switch {
	case payments.UnknownOutcome(err):
		result = "unknown"
	case err != nil:
		result = "error"
	case st == payments.RequiresPaymentMethod:
		result = "declined"
	}
	Calls.WithLabelValues(gateway, op, result).Observe(time.Since(start).Seconds())
}
