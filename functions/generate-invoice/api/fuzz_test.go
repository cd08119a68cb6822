package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/problem"
)

// FuzzCreateInvoiceBody: whatever the body, decoding, validation and the
// calculation answer with a client problem (4xx) or an invoice — never a
// panic, never a server error.
func FuzzCreateInvoiceBody(f *testing.F) {
	for _, seed := range []string{
		`{"account_id":"6f1c7e0a-0000-4000-8000-000000000001","user_id":"6f1c7e0a-0000-4000-8000-000000000002","currency":"USD","line_items":[{"description":"x","quantity":"2.5","unit_amount":1050,"discount":{"percent_off":"10"}}],"discounts":[{"amount_off":5}],"auto_finalize":true}`,
		`{"account_id":"6f1c7e0a-0000-4000-8000-000000000001","user_id":"6f1c7e0a-0000-4000-8000-000000000002","currency":"jpy","line_items":[{"description":"x","quantity":1e308,"unit_amount":9223372036854775807}]}`,
		`{"currency":"BHD","line_items":[{"description":"","quantity":"-0","unit_amount":-9223372036854775808}],"due_date":"2026-02-30"}`,
		`{"line_items":[{"quantity":true,"discount":{"percent_off":{},"amount_off":-1}}],"net_terms_days":-1,"due_date":"x"}`,
		`{"line_items":[{"description":"a","quantity":"999999999.999999","unit_amount":9223372036854775807}],"currency":"USD","account_id":"6f1c7e0a-0000-4000-8000-000000000001","user_id":"6f1c7e0a-0000-4000-8000-000000000002"}`,
		`[]`, `null`, `{"metadata":{"":"x"}}`,
	} {
		f.Add([]byte(seed))
	}
	s := billing.New(nil, nil, DefaultConfig().billing(), nil, time.Now)
	now := time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)
	clientErr := func(t *testing.T, err error) {
		var pe *problem.Error
		if st := Statuses.Status(err); !errors.As(err, &pe) || st < 400 || st >= 500 {
			t.Fatalf("not a client problem: %v", err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in invoicing.CreateInvoiceIn
		if err := httpx.Unmarshal(body, &in); err != nil {
			clientErr(t, err)
			return
		}
		// The account facts come from the database; the fuzzer bills one
		// known account (any other valid id is replaced by it).
		const account = "6f1c7e0a-0000-4000-8000-000000000001"
		if ids.Valid(strings.ToLower(in.AccountID)) {
			in.AccountID = account
		}
		for _, p := range []auth.Principal{{Subject: "6f1c7e0a-0000-4000-8000-000000000002", Role: auth.RoleCustomer}, {Role: auth.RoleService}} {
			memo := billing.AccountMemo{account: {ID: account, UserID: "6f1c7e0a-0000-4000-8000-000000000002", Currency: "USD", Status: accounts.Active}}
			d, err := s.ParseCreate(context.Background(), nil, p, memo, &in, "", now)
			if err != nil {
				clientErr(t, err)
				continue
			}
			for _, l := range d.Lines {
				d.Inv.Lines = append(d.Inv.Lines, l.Line) // taxes need the database; the rest is checked here
			}
			if err := d.Inv.Recompute(); err != nil {
				clientErr(t, err)
				continue
			}
			if d.Inv.Total < 0 || d.Inv.AmountDue != d.Inv.Total {
				t.Fatalf("totals: %+v", d.Inv)
			}
		}
	})
}
