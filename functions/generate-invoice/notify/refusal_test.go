package notify

import (
	"testing"
	"time"
)

// A server's refusal is recorded as go-mail's Client.Send reports it (GET
// /notifications shows it as smtp_response): its code, temporary for a
// 4xx, and go-mail's words.
func TestRefusalsAreRecordedAsBefore(t *testing.T) {
	mp, m := mailpitMailer(t)
	inv := wireInvoice(t, 2)
	e, err := Compose(wireNotification(inv), inv, Sender{From: "Acme Billing <billing@acme.example>"})
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{550, 451} {
		if err := mp.Chaos(t.Context(), code, 100); err != nil {
			t.Fatal(err)
		}
		s := m.Session()
		o, sent := s.Send(t.Context(), e, time.Now())
		s.Close()
		want := Outcome{Code: code, Temporary: code < 500, Response: "sending SMTP RCPT TO command: " + map[int]string{550: "550", 451: "451"}[code] +
			` "Chaos recipient error", affected recipient(s): <load@example.com>, affected message ID: <7f0c0d7e-2f7a-4c55-8a53-3d1bbd0b6a11@acme.example>`}
		if sent || o != want {
			t.Errorf("after a %d: %+v, sent %v; want %+v", code, o, sent, want)
		}
	}
}
