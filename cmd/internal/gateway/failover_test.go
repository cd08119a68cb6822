package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/problem"
)

// TestMain also runs the test binary as one replica process, for
// replicaProcess (GATEWAY_TEST_REPLICA=<name>).
func TestMain(m *testing.M) {
	if name := os.Getenv("GATEWAY_TEST_REPLICA"); name != "" {
		serveReplica(name, os.Getenv("GATEWAY_TEST_SLOW") == "1")
		return
	}
	os.Exit(m.Run())
}

// serveReplica answers its name; when slow it says "entered <method>" on
// stdout and holds a call to /slow until it is killed.
func serveReplica(name string, slow bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	fmt.Println("listening", ln.Addr().String())
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if slow && r.URL.Path == "/slow" {
			fmt.Println("entered", r.Method)
			select {} // until SIGKILL
		}
		_, _ = io.WriteString(w, name)
	}))
	os.Exit(1)
}

// replicaProcess starts the test binary as a replica process and returns
// its address and the lines it prints after "listening".
func replicaProcess(t *testing.T, name string, slow bool) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GATEWAY_TEST_REPLICA="+name)
	if slow {
		cmd.Env = append(cmd.Env, "GATEWAY_TEST_SLOW=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 16)
	sc := bufio.NewScanner(out)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			t.Fatalf("replica %s: %q", name, l)
		}
		return cmd, addr, lines
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not listen", name)
	}
	return nil, "", nil
}

// A replica process killed (SIGKILL) with a call in flight: an idempotent
// call (GET, or a POST with an Idempotency-Key) is answered by the other
// replica; a POST without a key may have taken effect, so the client gets
// a 502 problem and the other replica never sees it. A key the functions
// do not honour is no key: an empty Idempotency-Key (the middleware runs
// the request without one) or net/http's X-Idempotency-Key (no function
// reads it); until 2026-12-07 either made the gateway send a POST that
// may have moved money to a second replica, which applied it again.
func TestReplicaDiesWithACallInFlight(t *testing.T) {
	_, other, _ := replicaProcess(t, "other", false)
	for _, c := range []struct {
		method, header, key string
		connection          string // the client's Connection header
		failover            bool
	}{
		{http.MethodGet, "", "", "", true},
		{http.MethodPost, "Idempotency-Key", "k-1", "", true},
		{http.MethodPost, "", "", "", false},
		{http.MethodPost, "Idempotency-Key", "", "", false},
		{http.MethodPost, "X-Idempotency-Key", "k-1", "", false},
		// The key named hop-by-hop never reaches the function.
		{http.MethodPost, "Idempotency-Key", "k-1", "Idempotency-Key", false},
	} {
		t.Run(c.method+"/"+c.header+"="+c.key+"/connection="+c.connection, func(t *testing.T) {
			victim, addr, lines := replicaProcess(t, "victim", true)
			var otherReady atomic.Bool // the victim takes the call first
			rs := NewReplicaSet(Endpoint{Addr: addr}, Endpoint{Addr: other, Ready: otherReady.Load})
			gw := gatewayFor(t, Config{HoldFor: 10 * time.Second, Functions: []Function{{Status: FunctionStatus{Name: "fn"}, Replicas: rs}}})

			type answer struct {
				res  *http.Response
				body string
				err  error
			}
			done := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequest(c.method, gw.URL+"/function/fn/slow", strings.NewReader(`{"amount":1}`))
				if c.header != "" {
					req.Header[c.header] = []string{c.key}
				}
				if c.connection != "" {
					req.Header.Set("Connection", c.connection)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- answer{err: err}
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				done <- answer{res: res, body: string(b)}
			}()
			select {
			case l := <-lines:
				if l != "entered "+c.method {
					t.Fatalf("the victim printed %q", l)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the call never reached the victim")
			}
			otherReady.Store(true)
			if err := syscall.Kill(victim.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var a answer
			select {
			case a = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("no answer after the kill")
			}
			if a.err != nil {
				t.Fatal(a.err)
			}
			otherCalls := uint64(0)
			for _, st := range rs.Stats() {
				if st.Addr == other {
					otherCalls = st.Calls
				}
			}
			if c.failover {
				if a.res.StatusCode != http.StatusOK || a.body != "other" || otherCalls != 1 {
					t.Errorf("got %d %q (the other replica took %d calls), want the other replica's answer", a.res.StatusCode, a.body, otherCalls)
				}
				return
			}
			var d problem.Document
			_ = json.Unmarshal([]byte(a.body), &d)
			if a.res.StatusCode != http.StatusBadGateway || d.Code != BadGateway || otherCalls != 0 {
				t.Errorf("got %d %q (the other replica took %d calls), want a 502 bad_gateway problem and no second call", a.res.StatusCode, a.body, otherCalls)
			}
		})
	}
}
