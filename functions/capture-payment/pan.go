package main

import (
	"net/http"

	"github.com/billfn/billfn/shared/pan"
)

// rejectPAN refuses a body that holds what looks like a card number before
// the idempotency store or the decoder reads it: shared/pan.Middleware,
// where every function's detector now lives.
func rejectPAN(next http.Handler) http.Handler { return pan.Middleware(next) }

// containsPAN is shared/pan's test of a raw body, under the name this
// package's fuzz tests know it by.
func containsPAN(b []byte) bool { return pan.CheckBody(b) != nil }
