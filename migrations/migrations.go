// Package migrations embeds billfn's SQL migrations (goose format: one file
// per version with -- +goose Up and -- +goose Down sections) and applies
// them (Migrator: cmd/migrate, the local stack and the tests; no function
// imports this package).
//
// Version ranges keep each owner's files together:
//
//	00001-00009  platform tables shared by every function (idempotency, outbox, events)
//	00010-00019  process-transaction (accounts, transfers, postings)
//	00020-00029  generate-invoice (full: its next ones take 00060-00069)
//	00030-00039  capture-payment
//	00040-00049  handle-webhook
//	00050-00059  aggregate-report
//	00060-00069  generate-invoice, continued
//	00090-00099  the local stack's gateway (async queue)
package migrations

import "embed"

// FS holds every *.sql file of this directory.
//
//go:embed *.sql
var FS embed.FS
