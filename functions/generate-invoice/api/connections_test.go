package api

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/testenv"
)

// smtpRelay is a TCP relay in front of the real Mailpit's SMTP port that
// counts the connections made through it and the most open at once.
type smtpRelay struct {
	addr string
	mu   sync.Mutex
	open int
	most int
	made int
}

func relaySMTP(t *testing.T, target string) *smtpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	r := &smtpRelay{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.made++
			r.open++
			r.most = max(r.most, r.open)
			r.mu.Unlock()
			go r.relay(c, target)
		}
	}()
	return r
}

func (r *smtpRelay) relay(c net.Conn, target string) {
	defer func() {
		r.mu.Lock()
		r.open--
		r.mu.Unlock()
	}()
	defer c.Close()
	s, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done // either side closed: the session is over
}

func (r *smtpRelay) counts() (made, most int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.made, r.most
}

// EMAIL_SMTP_CONNECTIONS bounds the sender's SMTP sessions: a backlog of
// 60 emails to 60 customers goes out over exactly the 3 connections
// configured (one per worker for the whole pass, each carrying many
// emails), and every email arrives once, recorded as sent.
func TestSenderUsesTheConfiguredSMTPConnections(t *testing.T) {
	mp := testenv.StartMailpit(t)
	relay := relaySMTP(t, mp.SMTPAddr)
	cfg := DefaultConfig()
	cfg.Email.SMTPURL = "smtp://" + relay.addr + "?starttls=none"
	cfg.Email.Connections = 3
	g := newRigWith(t, cfg)

	tag := "conn-" + uuid.NewString()[:8]
	const n = 60
	var ids []string
	for i := range n {
		body := invoiceBody(uuid.NewString(), uuid.NewString())
		body["auto_finalize"] = true
		body["customer"].(map[string]any)["email"] = tag + "-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) + "@example.com"
		inv := g.createInvoice("", body)
		g.deliver(g.notificationEvents(inv.ID, "")...)
		ids = append(ids, inv.ID)
	}
	g.tick()

	made, most := relay.counts()
	t.Logf("%d SMTP connections made, at most %d open at once", made, most)
	if made != 3 || most > 3 {
		t.Fatalf("%d SMTP connections made, at most %d open at once; want 3, at most 3", made, most)
	}
	ms, err := mp.Messages(t.Context(), "to:"+tag)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range ms {
		for _, to := range m.To {
			seen[strings.ToLower(to.Address)]++
		}
	}
	if len(ms) != n || len(seen) != n {
		t.Fatalf("%d emails to %d addresses arrived, want %d to %d", len(ms), len(seen), n, n)
	}
	for _, id := range ids {
		if log := g.notifications("invoice_id=" + id); len(log) != 1 || log[0].Status != notify.Sent || log[0].Attempts != 1 {
			t.Fatalf("invoice %s: log %+v", id, log)
		}
	}
}

// EMAIL_SMTP_CONNECTIONS must be between 1 and 64.
func TestSMTPConnectionsAreChecked(t *testing.T) {
	for _, c := range []struct {
		n  int
		ok bool
	}{{0, false}, {1, true}, {8, true}, {64, true}, {65, false}} {
		cfg := DefaultConfig().Email
		cfg.Connections = c.n
		if err := cfg.check(); (err == nil) != c.ok {
			t.Errorf("EMAIL_SMTP_CONNECTIONS=%d: check() = %v", c.n, err)
		}
	}
}
