package testenv_test

import (
	"net/smtp"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/testenv"
)

// The bench empties its Mailpit before the e-mails scenario's window
// (mailpit.Client.DeleteAll): every message goes, and the server takes
// new ones after; it counts what arrived with mailpit.Client.Count.
func TestMailpitCountsAndDeleteAllEmptiesTheMailbox(t *testing.T) {
	mp := testenv.StartMailpit(t)
	send := func(to string) {
		t.Helper()
		msg := "From: billing@example.com\r\nTo: " + to + "\r\nSubject: test\r\n\r\nhello\r\n"
		if err := smtp.SendMail(mp.SMTPAddr, nil, "billing@example.com", []string{to}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := mp.Messages(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Mailpit holds %d messages, want %d", len(got), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	send("ada@example.com")
	send("grace@example.com")
	count(2)
	// Count, the bench's poll, agrees with the list, and with a query
	// counts the search's matches.
	for query, want := range map[string]int{"": 2, "to:ada@example.com": 1, "to:nobody@example.com": 0} {
		if n, err := mp.Count(t.Context(), query); err != nil || n != want {
			t.Errorf("Count(%q) = %d, %v; want %d", query, n, err, want)
		}
	}
	if err := mp.DeleteAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	count(0)
	send("alan@example.com")
	count(1)
}
