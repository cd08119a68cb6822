package events_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// The origin check of a delivery allocates per batch, not per event: the
// proofs' attributes are read from the event's own extension map (not a
// copy of it), the signatures decoded into the batch's items, the signed
// bytes of every event written into one buffer, the batch equation's
// scalars and points held in one array each, the source read as the
// event holds it (SourceOf; Source() built a string per event). 50
// events: at most 16 allocations (510, then 64 before).
func TestVerifyAllAllocatesPerBatch(t *testing.T) {
	ks := testenv.OriginKeys()
	evs, err := events.Parse(batchRequest(), receiveBody(t, 50))
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		for _, err := range ks.VerifyAll(evs) {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 16 {
		t.Errorf("VerifyAll of %d events: %.0f allocations, %.2f per event; want at most 16 per batch", len(evs), allocs, allocs/float64(len(evs)))
	}
}

// Parse reads each event's extensions from its own map when it checks
// their names (Extensions() copies the map), validates an event without
// the map Event.Validate allocates for its answer nor the strings it
// builds (plainValid), and decodes billfn's events without the SDK's
// generic path (decodeCommon): a batch of 50 payment events costs at most
// 11.5 allocations per event (46.16, then 43.5 before).
func TestParseAllocationsPerEvent(t *testing.T) {
	body := receiveBody(t, 50)
	r := batchRequest()
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := events.Parse(r, body); err != nil {
			t.Fatal(err)
		}
	})
	if perEvent := allocs / 50; perEvent > 11.5 {
		t.Errorf("Parse of 50 events: %.0f allocations, %.2f per event; want at most 11.5 per event", allocs, perEvent)
	}
}

func batchRequest() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Content-Type", events.ContentTypeBatch)
	return r
}
