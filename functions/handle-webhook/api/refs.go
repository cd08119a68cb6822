package api

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
)

// maxTaught bounds the references wanted keeps for the transaction that
// follows it; the set is cleared when full (the handler then decodes).
const maxTaught = 1024

// taughtRefs carries, from wanted to the transaction's handler, the
// reference each event it wanted for teaching the payment map names, so
// that the event's data is decoded once per delivery, not in wanted and
// again in onEvents. An entry is the event's id and a copy of its data:
// it answers only the same id with the same bytes (a forgery reusing a
// genuine event's id with other data is decoded, not given the genuine
// one's reference). The handler takes an entry (deletes it); those of
// transactions that never ran go when the set is full.
type taughtRefs struct {
	mu sync.Mutex
	m  map[string]taught
	// decoded counts the data decoded by refOf (tests read it).
	decoded atomic.Int64
}

type taught struct {
	data []byte
	ref  webhooks.PaymentRef
}

// keep remembers that ev names ref (wanted decoded it).
func (t *taughtRefs) keep(ev events.Event, ref webhooks.PaymentRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxTaught {
		t.m = make(map[string]taught, 64)
	}
	t.m[ev.ID()] = taught{data: bytes.Clone(ev.Data()), ref: ref}
}

// take is the reference wanted kept for ev, if any (and forgets it).
func (t *taughtRefs) take(ev events.Event) (webhooks.PaymentRef, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[ev.ID()]
	if !ok || !bytes.Equal(e.data, ev.Data()) {
		return webhooks.PaymentRef{}, false
	}
	delete(t.m, ev.ID())
	return e.ref, true
}

// refOf is webhooks.RefOf, decoding the event's data.
func (t *taughtRefs) refOf(ev events.Event) (webhooks.PaymentRef, bool, error) {
	t.decoded.Add(1)
	return webhooks.RefOf(ev)
}
