// Package billing is generate-invoice's use cases: create, change,
// finalize, void and pay invoices, each in one transaction of the store
// with the events it emits. It decides; package invoicing holds the rules
// it applies (types, state machine, calculation, validation), package
// store keeps the data behind the ports declared here (Store, Tx), and
// package api parses requests and events, calls a use case and writes
// the answer.
//
// Like invoicing it knows neither HTTP nor SQL: a request's idempotent
// answer is what the caller's Answer makes of the result, recorded by the
// store in the use case's transaction.
package billing
