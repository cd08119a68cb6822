package notify

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
)

// A subject is read as it was written, whatever a plan's name holds. An
// all-ASCII subject went on the wire as it was, so an RFC 2047 encoded
// word in a plan's name ("=?utf-8?q?=E2=80=AE?=") was decoded by the
// reader's client into characters the name could not hold itself: a
// right-to-left override turning the date round, or any text at all in
// the subject. Line breaks and a Bcc in it stay text: the message goes to
// its one recipient only (a real Mailpit decodes it as clients do).
func TestASubjectShowsAPlansNameAsWritten(t *testing.T) {
	mp, m := mailpitMailer(t)
	s := m.Session()
	defer s.Close()
	at := time.Date(2026, 5, 20, 12, 0, 0, 0, time.UTC)
	tag := "subj-" + uuid.NewString()[:8]
	sub := &invoicing.Subscription{ID: "sub", AccountID: "acct", Customer: invoicing.Customer{Name: "Ann", Email: tag + "@example.com"}}
	for i, name := range []string{
		"=?utf-8?q?=E2=80=AEPro?=",
		"Pro =?utf-8?b?UGFpZCBpbiBmdWxs?=",
		"Pro\r\nBcc: " + tag + "-bcc@example.com",
		"=?utf-8?q?Pro=0D=0ABcc:_" + tag + "-bcc2@example.com?=",
	} {
		plan := &events.Plan{Name: name, Amount: 1250, Currency: "USD", Interval: "month", IntervalCount: 1}
		req := events.NotificationRequested{Kind: events.NotifySubscriptionCanceled, SubscriptionID: "sub", Plan: plan, EndedAt: &at}
		n := New(uuid.NewString(), "src", "ev", req, sub.Customer.Email, "acme.example", at)
		e, err := ComposeSubscription(n, sub, Sender{From: "Acme <billing@acme.example>"})
		if err != nil {
			t.Fatal(err)
		}
		if o, sent := s.Send(t.Context(), e, at); !sent {
			t.Fatalf("email %d: %+v", i, o)
		}
		ms, err := mp.Messages(t.Context(), "message-id:"+n.MessageID)
		if err != nil || len(ms) != 1 {
			t.Fatalf("email %d: %d arrived (%v)", i, len(ms), err)
		}
		if want := "Your " + oneLine(name) + " subscription ended on 2026-05-20"; ms[0].Subject != want {
			t.Errorf("plan %q: the reader sees the subject %q, want %q", name, ms[0].Subject, want)
		}
		if len(ms[0].To) != 1 || ms[0].To[0].Address != sub.Customer.Email {
			t.Errorf("plan %q: sent to %+v", name, ms[0].To)
		}
	}
	if n, err := mp.Count(t.Context(), "to:"+tag+"-bcc"); err != nil || n != 0 {
		t.Errorf("%d emails went to the Bcc a plan's name wrote (%v)", n, err)
	}
}
