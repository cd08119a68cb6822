package notify

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/testenv"
)

// A session sends its emails one after the other over one connection,
// without go-mail's NOOP before each nor RSET after: every one arrives,
// whole, and the session survives the server closing it (the next email
// dials again).
func TestSessionSendsEveryEmailOverOneConnection(t *testing.T) {
	mp, m := mailpitMailer(t)
	s := m.Session()
	defer s.Close()
	tag := "s-" + uuid.NewString()[:8]
	const n = 5
	for i := range n {
		e := &Email{From: "billing@acme.example", To: tag + "-" + strconv.Itoa(i) + "@example.com", Subject: "email " + strconv.Itoa(i),
			Text: "text " + strconv.Itoa(i), HTML: "<p>html " + strconv.Itoa(i) + "</p>", MessageID: uuid.NewString() + "@acme.example",
			ListUnsubscribe: "<mailto:billing@acme.example>", Attachments: []Attachment{{Name: "a.pdf", ContentType: "application/pdf", Data: []byte("%PDF-1.4 " + strconv.Itoa(i))}}}
		if o, sent := s.Send(t.Context(), e, time.Now()); !sent {
			t.Fatalf("email %d: %+v", i, o)
		}
		if i == 2 {
			s.Close() // as after a failure: the next send dials again
		}
	}
	ms, err := mp.Messages(t.Context(), "to:"+tag)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n {
		t.Fatalf("%d emails arrived, want %d", len(ms), n)
	}
	for _, m := range ms {
		msg, err := mp.Message(t.Context(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		i := strings.TrimPrefix(m.Subject, "email ")
		if msg.Text != "text "+i || !strings.Contains(msg.HTML, "html "+i) || len(msg.Attachments) != 1 {
			t.Fatalf("email %s: text %q, html %q, %d attachments", i, msg.Text, msg.HTML, len(msg.Attachments))
		}
	}
}

// mailpitMailer is a Mailer sending to the tests' real Mailpit.
func mailpitMailer(t *testing.T) (*testenv.Mailpit, *Mailer) {
	t.Helper()
	mp := testenv.StartMailpit(t)
	cfg, err := ParseSMTPURL(mp.SMTPURL())
	if err != nil {
		t.Fatal(err)
	}
	return mp, NewMailer(cfg)
}
