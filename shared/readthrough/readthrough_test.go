package readthrough

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
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
