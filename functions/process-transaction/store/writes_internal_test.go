package store

import (
	"testing"
	"time"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
	"github.com/billfn/billfn/shared/testenv/allocs"
)

// TestEffectsAllocations pins the allocations of writing one posted
// transfer's event into a group: the event's bytes and the
// bytes flush signs (EncodeLater's own allocations) and nothing per
// transfer beyond them — the key id is the writes', not a new *string per event, and the
// transfer is encoded through a pointer, not boxed as a copy (issue 20).
// Averages over many runs, not testing.AllocsPerRun's whole numbers: under
// -race sync.Pool drops items at random, so two measures of the same work
// differ by an allocation now and then.
func TestEffectsAllocations(t *testing.T) {
	const source = "/functions/process-transaction"
	fb, fa, tb, ta := int64(90), int64(90), int64(10), int64(10)
	now := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	tr := &ledger.Transfer{Transfer: events.Transfer{ID: "0193a0c0-0000-7000-8000-000000000001", FromAccountID: "0193a0c0-0000-7000-8000-0000000000a1",
		ToAccountID: "0193a0c0-0000-7000-8000-0000000000b1", Amount: 10, Currency: "USD", Status: ledger.TransferPosted,
		FromBalance: &fb, FromAvailable: &fa, ToBalance: &tb, ToAvailable: &ta, CreatedAt: now, PostedAt: &now}}
	o := &ledger.Op{TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	w := &writes{now: now, source: source, signer: testenv.OriginSigner(source)}
	// Every column with room for all the runs, so only the effects' own
	// allocations count.
	const room = 1 << 13
	w.oID, w.oTopic, w.oKey = make([]string, 0, room), make([]string, 0, room), make([]string, 0, room)
	w.oPayload, w.oMsg, w.oKid = make([][]byte, 0, room), make([][]byte, 0, room), make([]*string, 0, room)
	encoded := allocs.PerRun(2000, func() {
		_, _, _, _ = events.EncodeLater(o.TraceParent, o.TraceState, source, events.TypeTransactionPosted, tr.FromAccountID, &tr.Transfer)
	})
	got := allocs.PerRun(2000, func() { w.effects(tr, o) })
	if got-encoded >= 0.5 {
		t.Errorf("effects of one transfer: %.2f allocations, want no more than the encoded event's %.2f", got, encoded)
	}
	if len(w.oKid) == 0 || w.oKid[0] == nil || *w.oKid[0] != w.signer.KeyID() {
		t.Errorf("origin_kid not written as the signer's key id")
	}
}
