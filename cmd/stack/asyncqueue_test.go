package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// relaunch starts the stack binary again with the environment of the
// first start (same ports, run directory, database): a restart after a
// crash. It waits until the stack is ready.
func (e *e2e) relaunch() {
	t := e.t
	t.Helper()
	cmd := exec.Command(e.bin)
	cmd.Dir, cmd.Env = e.root, e.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = e.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.cmd, e.exited, e.stopped = cmd, make(chan error, 1), false
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(e.out, sc.Text())
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(e.out, stdout)
	}()
	exited := e.exited
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-e.exited:
		e.stopped = true
		t.Fatalf("the stack exited on its restart: %v", err)
	case <-time.After(4 * time.Minute):
		t.Fatal("the restarted stack was not ready within 4 minutes")
	}
}

// An /async-function call answered 202 survives a crash of the stack
// (kill -9) and is delivered once after the restart, its callback
// carrying the same X-Call-Id.
func TestAsyncCallSurvivesAStackCrash(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []http.Header
	var bodies []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r.Header.Clone()), append(bodies, string(b))
		mu.Unlock()
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	e := startStack(t, stackOptions{env: []string{"CALLBACK_ALLOWED_HOSTS=" + ln.Addr().String()}})

	// No replica of process-transaction: the call stays queued.
	if r := e.sys(http.MethodPost, "/system/scale-function/process-transaction", map[string]any{"replicas": 0}); r.status != http.StatusAccepted {
		t.Fatalf("scale to 0: %s", r)
	}
	e.eventually("no process-transaction process", 30*time.Second, func() bool { return len(e.processesOf("process-transaction")) == 0 })
	callID := "durable-" + uuid.NewString()
	r := e.req(http.MethodGet, "/async-function/process-transaction/accounts/SYS-EXTERNAL-USD", nil,
		"X-Call-Id", callID, "X-Callback-Url", "http://"+ln.Addr().String()+"/done")
	if r.status != http.StatusAccepted || r.header.Get("X-Call-Id") != callID {
		t.Fatalf("async call: %s (X-Call-Id %q)", r, r.header.Get("X-Call-Id"))
	}
	if n := e.scalar(`SELECT count(*) FROM gateway_async_calls WHERE call_id = $1`, callID); n != 1 {
		t.Fatalf("%d queued rows for the call, want 1", n)
	}

	// The crash: the stack and, with it, every child.
	if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.exited
	e.stopped = true
	e.eventually("no process of the crashed stack", 30*time.Second, func() bool { return len(leftovers(e.marker)) == 0 })
	mu.Lock()
	before := len(got)
	mu.Unlock()
	if before != 0 {
		t.Fatalf("the call was delivered before the crash")
	}

	e.relaunch()
	e.eventually("the call delivered and forgotten", 90*time.Second, func() bool {
		return e.scalar(`SELECT count(*) FROM gateway_async_calls WHERE call_id = $1`, callID) == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("%d callbacks, want exactly 1", len(got))
	}
	if got[0].Get("X-Call-Id") != callID || got[0].Get("X-Function-Name") != "process-transaction" || got[0].Get("X-Function-Status") == "" {
		t.Errorf("the callback's headers: %v", got[0])
	}
	// The function's answer (the account, or its own 404), not the gateway's.
	if st := got[0].Get("X-Function-Status"); st != "200" && !(st == "404" && strings.Contains(bodies[0], "no such account")) {
		t.Errorf("the callback: status %s, body %s", st, bodies[0])
	}
}
