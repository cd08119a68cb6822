package events_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// A cluster-local endpoint fed by KafkaSource/PingSource (which cannot sign)
// accepts unsigned deliveries when told to, and still refuses a bad signature.
func TestTrustUnsignedAcceptsUnsignedDeliveriesOnlyWhenSet(t *testing.T) {
	g := newRig(t, false)
	ct := func() http.Header { return http.Header{"Content-Type": {events.ContentTypeStructured}} }

	s := structured(t, newEvent(t, 7))
	if code, _ := g.send(ct(), s); code != http.StatusUnauthorized {
		t.Fatalf("unsigned without TrustUnsigned: %d, want 401", code)
	}

	g.rc.TrustUnsigned = true
	if code, res := g.send(ct(), s); code != http.StatusOK || res.Processed != 1 {
		t.Fatalf("unsigned with TrustUnsigned: %d %+v", code, res)
	}
	forged := structured(t, newEvent(t, 9))
	h := ct()
	h.Set(events.SignatureHeader, events.SignDelivery([]byte("attacker"), time.Now(), g.consumer, forged))
	if code, _ := g.send(h, forged); code != http.StatusUnauthorized {
		t.Errorf("a wrong signature with TrustUnsigned: %d, want 401", code)
	}
	h = ct()
	h.Set("Authorization", "Bearer not-a-token")
	if code, _ := g.send(h, forged); code != http.StatusUnauthorized {
		t.Errorf("a bad token with TrustUnsigned: %d, want 401", code)
	}
	if n, total := g.sum(); n != 1 || total != 7 {
		t.Errorf("effects %d (sum %d), want only the unsigned delivery's", n, total)
	}
}
