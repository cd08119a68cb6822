package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// replicaServer is one replica: it answers its name, and holds a call
// to /slow until release is closed.
func replicaServer(t *testing.T, name string, release chan struct{}, entered chan<- string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- name
			<-release
		}
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// Calls go to the ready replica with the fewest calls in flight: while
// one replica holds a slow call, every other call goes to the other; idle
// replicas take calls in turn; a replica not ready takes none.
func TestReplicasLeastInflight(t *testing.T) {
	release, entered := make(chan struct{}), make(chan string, 1)
	a := replicaServer(t, "a", release, entered)
	b := replicaServer(t, "b", release, entered)
	var bReady atomic.Bool
	bReady.Store(true)
	rs := NewReplicaSet(Endpoint{Addr: a.Listener.Addr().String()}, Endpoint{Addr: b.Listener.Addr().String(), Ready: bReady.Load})
	gw := gatewayFor(t, Config{Functions: []Function{{Status: FunctionStatus{Name: "fn"}, Replicas: rs}}})

	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		_, body := get(t, gw.URL+"/function/fn/")
		seen[body]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("idle replicas did not take turns: %v", seen)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); get(t, gw.URL+"/function/fn/slow") }()
	busy := <-entered
	for i := 0; i < 10; i++ {
		if _, body := get(t, gw.URL+"/function/fn/"); body == busy {
			t.Fatalf("call %d went to %s, which has a call in flight", i, busy)
		}
	}
	close(release)
	wg.Wait()

	bReady.Store(false)
	for i := 0; i < 5; i++ {
		if _, body := get(t, gw.URL+"/function/fn/"); body != "a" {
			t.Fatalf("a replica that is not ready answered: %s", body)
		}
	}
}

// A replica that refuses the connection never saw the call: another ready
// replica takes it, even a POST.
func TestReplicasRefusedConnectionFailsOver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	live := replicaServer(t, "live", nil, nil)
	rs := NewReplicaSet(Endpoint{Addr: dead}, Endpoint{Addr: live.Listener.Addr().String()})
	gw := gatewayFor(t, Config{Functions: []Function{{Status: FunctionStatus{Name: "fn"}, Replicas: rs}}})
	for i := 0; i < 6; i++ {
		res, err := http.Post(gw.URL+"/function/fn/", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(b) != "live" {
			t.Fatalf("call %d: %d %s, want the live replica's answer", i, res.StatusCode, b)
		}
	}
}

type waker struct {
	Provider
	woke chan string
}

func (w waker) Wake(name string) { w.woke <- name }

// A call to a function without replicas wakes it through the provider and
// waits until a replica is ready.
func TestReplicasZeroWakesAndHolds(t *testing.T) {
	live := replicaServer(t, "up", nil, nil)
	rs := NewReplicaSet()
	w := waker{woke: make(chan string, 1)}
	gw := gatewayFor(t, Config{Provider: w, HoldFor: time.Minute, Functions: []Function{{Status: FunctionStatus{Name: "fn"}, Replicas: rs}}})
	go func() {
		if name := <-w.woke; name == "fn" {
			rs.Set(Endpoint{Addr: live.Listener.Addr().String()})
		}
	}()
	if status, body := get(t, gw.URL+"/function/fn/"); status != http.StatusOK || body != "up" {
		t.Fatalf("the held call: %d %s", status, body)
	}
}
