package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/redis"
	"github.com/billfn/billfn/shared/testenv"
)

// pgWire is a TCP proxy in front of the test's PostgreSQL that reads the
// frontend side of the protocol and records what every connection asks:
// its round trips (each Sync of the extended protocol and each simple
// Query: the client then waits for the server's ReadyForQuery), each with
// the statements it executes (each Execute, or the Query's text). What
// passes through is not changed. It records what the function really
// sends: the request path's statements, its groups' commits and the outbox
// publisher's passes alike.
type pgWire struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	trips [][]string // in the order the server received them
	// prepares are the round trips that only prepared statements (a
	// connection's first use of each): not in trips.
	prepares int
}

func newPGWire(t testing.TB, dbURL string) (*pgWire, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &pgWire{ln: ln, target: u.Host}
	t.Cleanup(func() { ln.Close() })
	go w.accept()
	u.Host = ln.Addr().String()
	return w, u.String()
}

func (w *pgWire) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", w.target)
		if err != nil {
			c.Close()
			continue
		}
		go func() {
			defer s.Close()
			defer c.Close()
			_, _ = io.Copy(c, s)
		}()
		go func() {
			defer s.Close()
			defer c.Close()
			w.frontend(io.TeeReader(c, s))
		}()
	}
}

// frontend reads one connection's frontend messages (the copy to the
// server happens as they are read).
func (w *pgWire) frontend(r io.Reader) {
	var hdr [5]byte
	// The startup packet: no type byte (an SSLRequest would come first;
	// the tests' URL says sslmode=disable).
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(hdr[:4]))-4); err != nil {
		return
	}
	named := map[string]string{} // prepared statements of the connection
	var current string
	var trip []string
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		fields := bytes.Split(body, []byte{0})
		switch hdr[0] {
		case 'P': // Parse: name, query
			named[string(fields[0])] = string(fields[1])
		case 'B': // Bind: portal, statement
			current = named[string(fields[1])]
		case 'E': // Execute
			trip = append(trip, current)
		case 'S': // Sync
			w.add(trip)
			trip = nil
		case 'Q': // a simple query
			w.add([]string{string(fields[0])})
		}
	}
}

func (w *pgWire) add(trip []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(trip) == 0 {
		w.prepares++
		return
	}
	w.trips = append(w.trips, trip)
}

// mark is a point in the record, to read what came after it.
type wireMark int

func (w *pgWire) mark() wireMark {
	w.mu.Lock()
	defer w.mu.Unlock()
	return wireMark(len(w.trips))
}

// since returns the round trips after m, each with its statements.
func (w *pgWire) since(m wireMark) [][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]string(nil), w.trips[m:]...)
}

var spaces = regexp.MustCompile(`\s+`)

// short is a statement on one line, cut to n characters.
func short(stmt string, n int) string {
	s := strings.TrimSpace(spaces.ReplaceAllString(stmt, " "))
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// wiredRig is newRig with the function's pool behind a pgWire.
func wiredRig(t testing.TB) (*rig, *pgWire) {
	t.Helper()
	w, dbURL := newPGWire(t, testenv.DatabaseURL(t))
	rdb, prefix := testenv.Redis(t)
	cluster, brokers := testenv.Kafka(t)
	d, err := platform.OpenWith(context.Background(), name, platform.Config{
		Postgres:         postgres.Config{URL: dbURL, MaxConns: 20},
		Redis:            redis.Config{URL: "redis://" + rdb.Options().Addr + "/0", Prefix: prefix},
		Auth:             testenv.AuthConfig(),
		Kafka:            outbox.Config{Brokers: brokers},
		EventKeys:        testenv.EventKey,
		OriginPublicKeys: testenv.OriginPublicKeys(name),
		OriginPrivateKey: testenv.OriginKeyPEM(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	kit := &testenv.Kit{Function: d.Name, Signer: testenv.NewSigner(), Kafka: cluster, Brokers: brokers, Origins: d.Events.Origins}
	return newRigOn(t, d, kit), w
}
