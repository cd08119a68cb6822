// Package invoicing is generate-invoice's domain: invoices and their
// state machine (draft → open → paid | void | uncollectible), exact
// calculation of taxes and discounts, gap-free numbering, subscriptions
// and their billing cycles, the validation of what callers send, the
// events a change emits and the problem codes of its rules.
//
// It knows neither HTTP nor SQL: package billing runs the use cases with
// these rules, package store keeps invoices and subscriptions behind
// billing's ports, package api speaks HTTP and CloudEvents.
package invoicing
