// Package payments is capture-payment's domain: payments, attempts,
// refunds and saved payment methods, the payment state machine (Stripe
// PaymentIntent semantics), the rules of each operation and the gateway
// port the adapters implement. It knows nothing of HTTP or SQL.
package payments
