package api

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

var fuzzNow = time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)

// checkValid asserts what validate promises of a request it let through:
// each side named once, by a canonical (lower-case) id or a well-formed
// number, two different accounts, a canonical currency, a positive
// amount, texts and metadata in limits, and an expiry only on a hold in
// the future.
func checkValid(t *testing.T, r ledger.TransferRequest) {
	t.Helper()
	side := func(name, id, number string) {
		switch {
		case (id == "") == (number == ""):
			t.Fatalf("%s named by id %q and number %q", name, id, number)
		case id != "" && (!ids.Valid(id) || id != strings.ToLower(id)):
			t.Fatalf("%s id %q is not a canonical UUID", name, id)
		case number != "" && !ledger.ValidNumber(number):
			t.Fatalf("%s number %q", name, number)
		}
	}
	side("from", r.FromAccountID, r.FromAccountNumber)
	side("to", r.ToAccountID, r.ToAccountNumber)
	if r.FromAccountID != "" && r.FromAccountID == r.ToAccountID || r.FromAccountNumber != "" && r.FromAccountNumber == r.ToAccountNumber {
		t.Fatalf("the same account on both sides: %+v", r)
	}
	if c, err := money.ParseCurrency(r.Currency); err != nil || string(c) != r.Currency {
		t.Fatalf("currency %q is not canonical", r.Currency)
	}
	if r.Amount <= 0 {
		t.Fatalf("amount %d", r.Amount)
	}
	if utf8.RuneCountInString(r.Description) > ledger.MaxDescription || utf8.RuneCountInString(r.ReferenceID) > ledger.MaxReference {
		t.Fatalf("description or reference too long")
	}
	if r.Metadata != nil && (len(r.Metadata) > ledger.MaxMetadata || !bytes.HasPrefix(bytes.TrimSpace(r.Metadata), []byte("{"))) {
		t.Fatalf("metadata %q", r.Metadata)
	}
	if r.ExpiresAt != nil && (!r.Pending || !r.ExpiresAt.After(fuzzNow)) {
		t.Fatalf("expires_at %v on pending=%v", r.ExpiresAt, r.Pending)
	}
}

// FuzzTransferRequest: a POST /transfers body is decoded and validated as
// the handler does: a 4xx problem, or a request checkValid accepts.
func FuzzTransferRequest(f *testing.F) {
	f.Add([]byte(`{"from_account_id":"6f1c7e0a-0000-4000-8000-000000000001","to_account_id":"6f1c7e0a-0000-4000-8000-000000000002","amount":1050,"currency":"eur"}`))
	f.Add([]byte(`{"from_account_number":"SYS-EXTERNAL-USD","to_account_id":"6F1C7E0A-0000-4000-8000-000000000002","amount":1,"currency":"USD","pending":true,"expires_at":"2026-03-11T00:00:00Z","metadata":{"kind":"refund"}}`))
	f.Add([]byte(`{"from_account_id":"6f1c7e0a-0000-4000-8000-000000000001","to_account_id":"6F1C7E0A-0000-4000-8000-000000000001","amount":-1,"currency":"XXX","metadata":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req ledger.TransferRequest
		err := httpx.Unmarshal(body, &req)
		if err == nil {
			err = req.Validate("", fuzzNow, auth.Principal{Subject: "fuzz", Role: auth.RoleCustomer})
		}
		if err != nil {
			var pe *problem.Error
			if !errors.As(err, &pe) || Statuses.Status(err) < 400 || Statuses.Status(err) >= 500 {
				t.Fatalf("body %q: %v is not a 4xx problem", body, err)
			}
			return
		}
		checkValid(t, req)
	})
}

// FuzzOpFor: the data of a billfn.transaction.requested event is either a
// permanent error (the event is parked), a transfer accepted earlier to
// decide (only in the ledger's own event), named with both its accounts
// by canonical id, or a new request checkValid accepts, keyed by the
// event's source and id; a billfn kind only in capture-payment's.
func FuzzOpFor(f *testing.F) {
	f.Add([]byte(`{"from_account_id":"6f1c7e0a-0000-4000-8000-000000000001","to_account_id":"6f1c7e0a-0000-4000-8000-000000000002","amount":1050,"currency":"EUR"}`))
	f.Add([]byte(`{"transfer_id":"0190a6f0-0000-7000-8000-000000000001","from_account_id":"6f1c7e0a-0000-4000-8000-000000000001","to_account_id":"6f1c7e0a-0000-4000-8000-000000000002","amount":0}`))
	f.Add([]byte(`null`))
	s := &Service{now: func() time.Time { return fuzzNow }}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, source := range []string{KindStater, Name} {
			ev := event.New()
			ev.SetID("0190a6f0-0000-7000-8000-00000000000e")
			ev.SetSource(events.Source(source))
			ev.SetType("billfn.transaction.requested")
			ev.SetDataContentType(event.ApplicationJSON)
			ev.DataEncoded = data
			o, err := s.opFor(ev)
			if err != nil {
				if !events.IsPermanent(err) {
					t.Fatalf("data %q: %v is not permanent: the event would be retried forever", data, err)
				}
				continue
			}
			if o.Complete != "" {
				if source != Name {
					t.Fatalf("data %q: %s's event decides accepted transfer %q", data, source, o.Complete)
				}
				for _, id := range []string{o.Complete, o.Req.FromAccountID, o.Req.ToAccountID} {
					if !ids.Valid(id) || id != strings.ToLower(id) {
						t.Fatalf("data %q: accepted transfer %q names %q, not a canonical UUID", data, o.Complete, id)
					}
				}
				continue
			}
			checkValid(t, o.Req)
			if o.Scope != "event:"+ev.Source() || o.Key != ev.ID() || !ids.Valid(o.ID) || len(o.Hash) == 0 {
				t.Fatalf("data %q: op keyed %q %q, id %q", data, o.Scope, o.Key, o.ID)
			}
			if source != KindStater && o.Req.ClaimsBillfnKind() {
				t.Fatalf("data %q: %s's request claims a billfn kind: %s", data, source, o.Req.Metadata)
			}
		}
	})
}
