package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/mailpit"
)

// Mailpit is a private Mailpit for one test: SMTP and its API on free
// loopback ports, its messages in the test's temporary directory (kept
// across Stop and Start, so a test can take the server away and bring it
// back). It is built (web UI included, shared/mailpit) when missing; when
// it cannot be found, built or started the test fails, it never skips.
type Mailpit struct {
	mailpit.Client
	SMTPAddr string // 127.0.0.1:port
	tb       testing.TB
	bin      string
	args     []string
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
}

var (
	mailpitOnce sync.Once
	mailpitBin  string
	mailpitErr  error
)

// StartMailpit starts a private Mailpit, stopped when the test ends.
func StartMailpit(tb testing.TB) *Mailpit {
	tb.Helper()
	mailpitOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		mailpitBin, mailpitErr = mailpit.Find(ctx, os.Stderr)
	})
	if mailpitErr != nil {
		tb.Fatalf("Mailpit is needed and could not be found or installed: %v", mailpitErr)
	}
	smtp, ui := freeAddr(tb), freeAddr(tb)
	m := &Mailpit{Client: mailpit.Client{Base: "http://" + ui}, SMTPAddr: smtp, tb: tb, bin: mailpitBin,
		// Chaos lets a test make the server answer 4xx or 5xx (Client.Chaos).
		args: append(mailpit.Args(smtp, ui, filepath.Join(tb.TempDir(), "mailpit.db")), "--enable-chaos")}
	tb.Cleanup(m.Stop)
	m.Start()
	return m
}

// SMTPURL is the SMTP_URL that sends to this Mailpit.
func (m *Mailpit) SMTPURL() string { return "smtp://" + m.SMTPAddr + "?starttls=none" }

// Start runs Mailpit (again) and waits until its SMTP port and API answer.
func (m *Mailpit) Start() {
	m.tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		m.tb.Fatalf("start Mailpit: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", m.SMTPAddr, time.Second)
		if err == nil {
			c.Close()
			if err = m.Ready(ctx); err == nil {
				return
			}
		}
		select {
		case <-done:
			m.cmd = nil
			m.tb.Fatalf("Mailpit exited at start (%s %v)", m.bin, m.args)
		case <-ctx.Done():
			m.tb.Fatalf("Mailpit did not answer on %s and %s: %v", m.SMTPAddr, m.Base, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends Mailpit and waits until it has exited (its SMTP port refuses
// connections then).
func (m *Mailpit) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

// freeAddr is a free loopback address (the port is released for the
// caller to bind).
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
