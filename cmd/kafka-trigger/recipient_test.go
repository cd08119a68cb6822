package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// capture is one request a function received, as it came.
type capture struct {
	header http.Header
	body   []byte
}

// TestADeliveryOrTickReplayedToAnotherFunctionIsRefused: the delivery
// signature names the function it was made for. Whoever captures a
// signed delivery (or tick) to one function, within the signature's five
// minutes, cannot have another function take it: every function holds
// the same delivery key, so a signature over the timestamp and body alone
// would open them all.
func TestADeliveryOrTickReplayedToAnotherFunctionIsRefused(t *testing.T) {
	d, kit := testenv.Platform(t, "billing")
	kit.Origins.Add(events.Source("tester"), testenv.OriginSigner(events.Source("tester")).Public())
	var (
		mu   sync.Mutex
		seen = map[string][]capture{} // by X-Topic: the delivery, the tick
	)
	took := map[string]int{}
	handle := func(consumer string) func(context.Context, pgx.Tx, events.Event) error {
		return func(context.Context, pgx.Tx, events.Event) error {
			mu.Lock()
			took[consumer]++
			mu.Unlock()
			return nil
		}
	}
	d.Events.On("billfn.test.happened", handle("billing"))
	fnHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := mustRead(r)
		mu.Lock()
		seen[r.Header.Get("X-Topic")] = append(seen[r.Header.Get("X-Topic")], capture{r.Header.Clone(), body})
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.Events.ServeHTTP(w, r)
	})
	startStack(t, kit.Brokers, []fn{{name: "billing", handler: fnHandler,
		annotations: map[string]string{"topic": events.TopicBilling + ",cron-function", "schedule": "0 0 1 1 *"}}},
		func(c *Config) { c.ScheduleEvery = config.Duration(time.Second) })

	msg, _ := structured(t, events.TopicBilling, "acct-1", map[string]int{"amount": 1050})
	produce(t, kit.Brokers, msg)
	waitFor(t, "the delivery and a tick", 15*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return took["billing"] == 1 && len(seen["cron-function"]) > 0
	})

	// Another function with the same delivery key: ledger.
	ledger := &events.Receiver{Consumer: "ledger", Pool: d.Pool, Keys: [][]byte{[]byte(testenv.EventKey)}, Origins: kit.Origins,
		Tick: func(context.Context) error { mu.Lock(); took["ledger tick"]++; mu.Unlock(); return nil }}
	ledger.On("billfn.test.happened", handle("ledger"))
	mu.Lock()
	replays := map[string]capture{"the delivery": seen[events.TopicBilling][0], "the tick": seen["cron-function"][0]}
	mu.Unlock()
	for what, c := range replays {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(c.body))
		req.Header = c.header.Clone()
		rec := httptest.NewRecorder()
		ledger.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s to billing, replayed to ledger: %d %s, want 401", what, rec.Code, rec.Body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if took["ledger"] != 0 || took["ledger tick"] != 0 {
		t.Errorf("ledger took %d events and %d ticks meant for billing", took["ledger"], took["ledger tick"])
	}
}
