package platform_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

// Issue 20: from exec to ready, a function waits for its first Postgres
// connection (a backend forked and initialized: the largest share of its
// start-up on the bench's host) and then for what it asks on it. The
// warm-up only connects, and the readiness probe's ping is the one
// statement Postgres runs before the function is ready (it was two: the
// warm-up's ping and the probe's). On Redis the connection's handshake is
// HELLO alone: no CLIENT MAINT_NOTIFICATIONS (a managed-cluster feature
// this Redis refuses) nor CLIENT SETINFO, two round trips more on every
// new connection, at start-up and whenever the pool grows.
func TestStartUpAsksPostgresAndRedisOnlyWhatReadinessNeeds(t *testing.T) {
	cfg := startConfig(t)
	pg := countingProxy(t, hostOf(t, cfg.Postgres.URL), postgresMessages)
	rd := countingProxy(t, hostOf(t, cfg.Redis.URL), redisCommands)
	cfg.Postgres.URL = withHost(t, cfg.Postgres.URL, pg.addr)
	cfg.Redis.URL = withHost(t, cfg.Redis.URL, rd.addr)
	d, err := platform.OpenWith(context.Background(), "demo", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(http.NewServeMux())).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/_/ready", nil))
	if rec.Code != 200 {
		t.Fatalf("ready = %d %s", rec.Code, rec.Body)
	}
	if got := pg.seen(); strings.Join(got, ",") != "Q" {
		t.Errorf("Postgres was sent %v before ready, want one simple query (the probe's ping)", got)
	}
	// The warm-up's PING and the rate limiter's script (EVALSHA, and EVAL
	// when Redis does not hold it yet), then the probe's PING.
	got := rd.seen()
	var handshake []string
	for _, c := range got {
		if c == "HELLO" || c == "CLIENT" {
			handshake = append(handshake, c)
		}
	}
	if strings.Join(handshake, ",") != "HELLO" {
		t.Errorf("Redis was sent %v before ready: the handshake is %v, want HELLO alone", got, handshake)
	}
}

type proxy struct {
	addr string
	mu   sync.Mutex
	msgs []string
}

func (p *proxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.msgs...)
}

func (p *proxy) add(m string) {
	p.mu.Lock()
	p.msgs = append(p.msgs, m)
	p.mu.Unlock()
}

// countingProxy forwards connections to target and notes what clients send,
// as split by parse.
func countingProxy(t *testing.T, target string, parse func(r *bufio.Reader, note func(string)) error) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &proxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(c, s); c.Close() }()
			go func() {
				// The parser is handed each write before the server is, so
				// it has a message in hand before the answer can come back
				// (the other order lost the race in ci-like and once in 30
				// runs, 2026-12-05: "Postgres was sent []").
				pr, pw := io.Pipe()
				go func() { _ = parse(bufio.NewReader(pr), p.add); _, _ = io.Copy(io.Discard, pr) }()
				_, _ = io.Copy(io.MultiWriter(pw, s), c)
				pw.Close()
				s.Close()
			}()
		}
	}()
	return p
}

// postgresMessages notes the type of every message after the startup one.
func postgresMessages(r *bufio.Reader, note func(string)) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	if _, err := r.Discard(int(binary.BigEndian.Uint32(n[:])) - 4); err != nil {
		return err
	}
	for {
		typ, err := r.ReadByte()
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return err
		}
		if _, err := r.Discard(int(binary.BigEndian.Uint32(n[:])) - 4); err != nil {
			return err
		}
		if typ != 'X' { // Terminate, at close
			note(string(typ))
		}
	}
}

// redisCommands notes the name of every RESP command.
func redisCommands(r *bufio.Reader, note func(string)) error {
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		return strings.TrimRight(s, "\r\n"), err
	}
	for {
		head, err := line()
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(head, "*"))
		for i := range n {
			l, err := line()
			if err != nil {
				return err
			}
			size, _ := strconv.Atoi(strings.TrimPrefix(l, "$"))
			b := make([]byte, size+2)
			if _, err := io.ReadFull(r, b); err != nil {
				return err
			}
			if i == 0 {
				note(strings.ToUpper(string(b[:size])))
			}
		}
	}
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func withHost(t *testing.T, raw, host string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = host
	return u.String()
}
