package platform_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestOpenWiresAWorkingFunction(t *testing.T) {
	d, kit := testenv.Platform(t, "demo")
	var got string
	d.Events.On("billfn.demo.happened", func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		got = ev.ID()
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /{$}", d.Events)
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(mux)).Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/_/ready", nil))
	if rec.Code != 200 {
		t.Fatalf("ready = %d %s", rec.Code, rec.Body)
	}
	ev, _ := events.New(context.Background(), "other", "billfn.demo.happened", "x", map[string]int{"n": 1})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, kit.Delivery(t, ev))
	if rec.Code != 200 || got != ev.ID() {
		t.Fatalf("delivery: %d %s (handled %q)", rec.Code, rec.Body, got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !bytes.Contains(rec.Body.Bytes(), []byte(`billfn_events_received_total{consumer="demo",result="processed",type="billfn.demo.happened"} 1`)) {
		t.Fatalf("metrics lack the event counter:\n%s", rec.Body)
	}
}

func TestOpenNamesEveryMissingVariable(t *testing.T) {
	t.Setenv(config.SecretsDirEnv, t.TempDir())
	for _, k := range []string{"DATABASE_URL", "EVENT_SIGNING_KEYS", "JWT_SECRET"} {
		t.Setenv(k, "")
	}
	_, err := platform.Open(context.Background(), "demo")
	if err == nil {
		t.Fatal("Open succeeded without configuration")
	}
	for _, want := range []string{"DATABASE_URL", "EVENT_SIGNING_KEYS"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}
