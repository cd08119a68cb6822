package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
)

// Event data is read with member names matched exactly. Read
// case-insensitively, {"amount":5,"Amount":7} was 7 when streamed and 5
// when replayed from report_events' jsonb (which reorders members), so a
// check found a difference nobody made. Found by rollup's FuzzDecode.
func TestMembersDifferingOnlyInCaseReadTheSameStreamedAndReplayed(t *testing.T) {
	g := newRig(t)
	at := time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC)
	data := json.RawMessage(fmt.Sprintf(`{"id":%q,"from_account_id":%q,"to_account_id":%q,"amount":5,"Amount":7,"currency":"USD","status":"posted"}`,
		id(), id(), id()))
	if res := g.deliver(newEvent(t, "process-transaction", rollup.TransferPosted, "", at, data)); res.Processed != 1 {
		t.Fatalf("delivery: %+v", res)
	}
	if c := g.check("2026-02-03", "2026-02-04"); !c.Equal || c.Events != 1 {
		t.Fatalf("streamed vs recomputed: %+v", c)
	}
}
