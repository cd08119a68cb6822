// Package requestid makes and carries the id of a request: every function
// and the local gateway use the same generator and the same rule for an id
// a caller brings, so one id follows a request through the logs and into
// its problem document.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// Header is the response (and request) header that carries the id.
const Header = "X-Request-Id"

// MaxLen is the longest id taken from a caller; a longer one is replaced.
const MaxLen = 128

var prefix = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

var seq atomic.Uint64

// New returns a unique, cheap id: a per-process random prefix and a
// counter (as unique as a UUID for this purpose, and cheaper).
func New() string {
	return prefix + "-" + strconv.FormatUint(seq.Add(1), 36)
}

// Usable reports whether an id a caller sent may be kept: not empty, at
// most MaxLen bytes, printable ASCII only (it goes into logs and headers).
func Usable(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// FirstUsable returns the first usable id of candidates, or a new one.
func FirstUsable(candidates ...string) string {
	for _, c := range candidates {
		if Usable(c) {
			return c
		}
	}
	return New()
}

type key struct{}

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, id)
}

// From returns the id ctx carries, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(key{}).(string)
	return id
}
