package readthrough

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/config"
)

func TestGetSendsTheServiceTokenAndReadsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/fn/invoices/known":
			_, _ = w.Write([]byte(`{"id":"known","total":2900}`))
		case r.URL.Path == "/fn/invoices/broken":
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := New(srv.URL+"/fn/", "tok")
	var v struct {
		ID    string `json:"id"`
		Total int64  `json:"total"`
	}
	if err := c.Get(context.Background(), "invoices", "known", &v); err != nil || v.ID != "known" || v.Total != 2900 {
		t.Fatalf("known: %+v %v", v, err)
	}
	if err := c.Get(context.Background(), "invoices", "missing", &v); !errors.Is(err, ErrUnknown) {
		t.Fatalf("missing: %v, want ErrUnknown", err)
	}
	if err := c.Get(context.Background(), "invoices", "broken", &v); err == nil || errors.Is(err, ErrUnknown) {
		t.Fatalf("broken: %v, want an error that is not ErrUnknown", err)
	}
	if New("", "tok") != nil || New(srv.URL, "") != nil {
		t.Fatal("a client without a URL or a token must be nil")
	}
}

// A rotated service-token secret is sent without a restart: the client
// reads the file again once it changes (config.Follow, every 2 s at most).
func TestARotatedServiceTokenIsSentWithoutARestart(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	write := func(v string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, ServiceTokenSecret)); err != nil {
			t.Fatal(err)
		}
	}
	write("old")
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := New(srv.URL, "old")
	var v struct{}
	if err := c.Get(context.Background(), "accounts", "a", &v); err != nil || seen.Load() != "Bearer old" {
		t.Fatalf("first call sent %v (%v)", seen.Load(), err)
	}
	write("new")
	deadline := time.Now().Add(15 * time.Second)
	for seen.Load() != "Bearer new" {
		if time.Now().After(deadline) {
			t.Fatalf("still sending %v after the rotation", seen.Load())
		}
		time.Sleep(100 * time.Millisecond)
		if err := c.Get(context.Background(), "accounts", "a", &v); err != nil {
			t.Fatal(err)
		}
	}
}
