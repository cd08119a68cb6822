package store_test

import (
	"strings"
	"testing"

	"github.com/billfn/billfn/functions/handle-webhook/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// What an endpoint receives is the event without billfn's internal origin
// proof, whether the event was signed alone or in a tree (originpath).
func TestPayloadLeavesOutTheOriginProof(t *testing.T) {
	payloads, msgs := make([][]byte, 2), make([][]byte, 2)
	for i := range payloads {
		var err error
		_, payloads[i], msgs[i], err = events.EncodeLater("", "", "generate-invoice", events.TypeInvoicePaid, "inv", map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
	}
	testenv.OriginSigner(events.Source("generate-invoice")).SignAll(payloads, msgs)
	for _, p := range payloads {
		ev, err := events.Unmarshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ev.Extensions()[events.OriginPathExt]; !ok {
			t.Fatalf("the event was not signed in a tree: %s", p)
		}
		body, err := store.Payload(ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{events.OriginKidExt, events.OriginSigExt, events.OriginPathExt} {
			if strings.Contains(string(body), `"`+name+`"`) {
				t.Errorf("the endpoint's body has %s: %s", name, body)
			}
		}
	}
}
