// Package gateway holds capture-payment's payment gateway adapters: Stripe
// (stripe-go) and the built-in sandbox, which keeps its books as a real
// gateway would. Both implement payments.Gateway.
package gateway
