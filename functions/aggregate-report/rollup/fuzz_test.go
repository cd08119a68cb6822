package rollup

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
)

// fuzzTypes are the consumed event types, and one that is not. Types
// consumed later come after it, so the seed corpus (which names a type by
// its index) keeps meaning what it says.
var fuzzTypes = append(slices.Sorted(func(yield func(string) bool) {
	for t := range kinds {
		if t != PaymentUnapplied && !yield(t) {
			return
		}
	}
}), "billfn.something.else", PaymentUnapplied)

// fuzzSource is the source an event of typ comes from: its producer's when
// the aggregator accepts it from one source only.
func fuzzSource(typ string) string {
	if typ == PaymentUnapplied {
		return UnappliedSource
	}
	return "/functions/fuzz"
}

// preamble gives the state the fuzzed event may touch: an account, a
// payment, an invoice, a subscription and a dispute of the test ids.
func preamble() []Event {
	return []Event{
		ev(AccountCreated, t0, map[string]any{"id": acct, "user_id": user, "account_number": "ACC-1", "currency": "USD"}),
		ev(PaymentCreated, t0, map[string]any{"payment_id": pay1, "account_id": acct, "amount": 1000, "currency": "USD", "gateway": "stripe"}),
		ev(InvoiceFinalized, t0, map[string]any{"invoice_id": inv1, "account_id": acct, "currency": "USD", "total": 12000,
			"amount_due": 12000, "status": "open", "due_date": "2026-03-31"}),
		ev(SubscriptionCreated, t0, sub(sub1, "active", 2900)),
	}
}

// fuzzApply applies the preamble and then e to empty state.
func fuzzApply(t *testing.T, e Event) (*Aggregator, error) {
	t.Helper()
	a := &Aggregator{State: NewState(), Effects: NewEffects()}
	for _, p := range preamble() {
		p.ID, p.Source = "pre-"+p.Type, "/functions/fuzz"
		if err := a.Apply(p); err != nil {
			t.Fatalf("preamble %s: %v", p.Type, err)
		}
	}
	return a, a.Apply(e)
}

// FuzzApply: the data of any consumed event, at any time, after some state,
// either applies or fails permanently (the event is parked, never retried
// forever); applying is deterministic (streaming and a replay must agree
// exactly); and what it leaves are rollups in ISO 4217 currencies (or
// XXX) of known metrics, per-account rows and state rows keyed by
// canonical UUIDs.
func FuzzApply(f *testing.F) {
	f.Add(uint8(0), []byte(`{"id":"t1","from_account_id":"`+acct+`","to_account_id":"`+bcct+`","amount":1050,"currency":"usd","status":"posted"}`), int64(0))
	f.Add(uint8(3), []byte(`{"payment_id":"`+pay1+`","account_id":"`+acct+`","amount":1000,"amount_captured":600,"currency":"USD","gateway":"stripe"}`), int64(3600))
	f.Add(uint8(9), []byte(`null`), int64(-86400))
	known := map[string]bool{}
	for _, m := range Metrics {
		known[m] = true
	}
	f.Fuzz(func(t *testing.T, typ uint8, data []byte, offset int64) {
		at := Micro(t0.Add(time.Duration(offset%(100*365*86400)) * time.Second))
		e := Event{ID: "fuzzed", Type: fuzzTypes[int(typ)%len(fuzzTypes)], Time: at, Subject: acct, Data: data}
		e.Source = fuzzSource(e.Type)
		a, err := fuzzApply(t, e)
		b, err2 := fuzzApply(t, e)
		if (err == nil) != (err2 == nil) || !reflect.DeepEqual(a.Effects.Global, b.Effects.Global) ||
			!reflect.DeepEqual(a.Effects.Accounts, b.Effects.Accounts) || !reflect.DeepEqual(a.Effects.Recon, b.Effects.Recon) ||
			!reflect.DeepEqual(a.Effects.Unapplied, b.Effects.Unapplied) || !reflect.DeepEqual(a.State, b.State) {
			t.Fatalf("%s %s applies differently twice", e.Type, data)
		}
		if err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("%s %s: %v is not permanent: the event would be retried forever", e.Type, data, err)
			}
			return
		}
		currency := func(what, c string) {
			if c == NoCurrency {
				return
			}
			if p, err := money.ParseCurrency(c); err != nil || string(p) != c {
				t.Fatalf("%s %s: %s in currency %q", e.Type, data, what, c)
			}
		}
		uuid := func(what, id string) {
			if id == "" || canonicalID(id) != id {
				t.Fatalf("%s %s: %s %q is not a canonical UUID", e.Type, data, what, id)
			}
		}
		for k := range a.Effects.Global {
			currency("rollup "+k.Metric, k.Currency)
			if !known[k.Metric] || (k.Grain != Hour && k.Grain != Day) {
				t.Fatalf("%s %s: rollup %+v", e.Type, data, k)
			}
		}
		for k := range a.Effects.Accounts {
			currency("account rollup "+k.Metric, k.Currency)
			uuid("account rollup of", k.Account)
			if !known[k.Metric] {
				t.Fatalf("%s %s: account rollup %+v", e.Type, data, k)
			}
		}
		for _, r := range a.Effects.Recon {
			currency("reconciliation row", r.Currency)
		}
		for _, u := range a.Effects.Unapplied {
			currency("unapplied row", u.Currency)
			uuid("unapplied payment", u.PaymentID)
			uuid("unapplied invoice", u.InvoiceID)
			uuid("unapplied account", u.AccountID)
			if u.UserID != "" {
				uuid("unapplied user", u.UserID)
			}
		}
		for id := range a.State.Accounts {
			uuid("account", id)
		}
		for id, p := range a.State.Payments {
			uuid("payment", id)
			currency("payment", p.Currency)
		}
		for id, inv := range a.State.Invoices {
			uuid("invoice", id)
			currency("invoice", inv.Currency)
		}
		for id, s := range a.State.Subscriptions {
			uuid("subscription", id)
			currency("subscription", s.Currency)
		}
	})
}

// dataTypes are the shapes apply.go decodes event data into.
var dataTypes = []func() any{
	func() any { return new(transferData) }, func() any { return new(accountData) },
	func() any { return new(invoiceData) }, func() any { return new(subscriptionData) },
	func() any { return new(paymentData) }, func() any { return new(refundData) },
	func() any { return new(gatewayUpdateData) }, func() any { return new(map[string]any) },
}

// FuzzDecode: decode is a function of the event as the log holds it.
// Streaming decodes the data as received; a replay decodes report_events'
// jsonb, which Postgres gives back with each object's duplicate members
// dropped (the last kept) and its members reordered: both must read the
// same value, or streamed and recomputed rollups disagree. And on data in
// billfn's own shape (member names in lower-case snake case) decode reads
// exactly what encoding/json reads. Only data jsonb stores (valid JSON in
// valid UTF-8) ever reaches decode: appendLog stores each event before
// it is applied.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(0), []byte(`{"id":"t1","amount":1050,"currency":"USD","metadata":{"kind":"refund"}}`))
	f.Add(uint8(2), []byte(`{"invoice_id":"x","due_date":null,"paid_at":"2026-03-01T10:30:00Z"}`))
	f.Add(uint8(7), []byte(`{"a":[1,2.5,"x",null,true,{"b":{}}]}`))
	f.Add(uint8(0), []byte(`{"amount":5,"Amount":7,"currency":"USD"}`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) {
			return
		}
		mk := dataTypes[int(kind)%len(dataTypes)]
		got := mk()
		err := decode(Event{Type: "t", ID: "i", Source: "s", Data: data}, got)
		if stored, jerr := jsonbText(data); jerr == nil {
			again := mk()
			err2 := decode(Event{Type: "t", ID: "i", Source: "s", Data: stored}, again)
			if (err == nil) != (err2 == nil) || err == nil && !sameDecoded(got, again) {
				t.Fatalf("%T: streaming %q gives %+v (%v); replaying its jsonb %s gives %+v (%v)", got, data, got, err, stored, again, err2)
			}
		}
		if !snakeKeys(data) {
			return
		}
		want := mk()
		werr := json.Unmarshal(data, want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%T from %q: decode says %v, encoding/json %v", got, data, err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%T from %q: decode gives %+v, encoding/json %+v", got, data, got, want)
		}
	})
}

// sameDecoded compares two decoded values; free-form metadata (kept raw)
// is compared as the JSON value it holds, which is how metadata reads it.
func sameDecoded(a, b any) bool {
	x, xok := a.(*transferData)
	y, yok := b.(*transferData)
	if !xok || !yok {
		return reflect.DeepEqual(a, b)
	}
	xc, yc := *x, *y
	xc.Metadata, yc.Metadata = nil, nil
	var xm, ym any
	xerr, yerr := json.Unmarshal(x.Metadata, &xm), json.Unmarshal(y.Metadata, &ym)
	return reflect.DeepEqual(xc, yc) && (xerr == nil) == (yerr == nil) && reflect.DeepEqual(xm, ym) &&
		reflect.DeepEqual(metadata(x.Metadata), metadata(y.Metadata))
}

// jsonbText is data as Postgres's jsonb gives it back (data::text): in
// every object the last of duplicate members only, ordered by name length
// then bytes. Strings and numbers keep their values.
func jsonbText(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	if err := jsonbValue(dec, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func jsonbValue(dec *json.Decoder, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := jsonbValue(dec, out); err != nil {
					return err
				}
			}
			out.WriteByte(']')
			_, err := dec.Token()
			return err
		}
		members := map[string][]byte{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			var val bytes.Buffer
			if err := jsonbValue(dec, &val); err != nil {
				return err
			}
			members[k.(string)] = val.Bytes()
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		keys := slices.Collect(maps.Keys(members))
		slices.SortFunc(keys, func(a, b string) int {
			if len(a) != len(b) {
				return len(a) - len(b)
			}
			return strings.Compare(a, b)
		})
		out.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				out.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			out.Write(kb)
			out.WriteByte(':')
			out.Write(members[k])
		}
		out.WriteByte('}')
	case json.Number:
		out.WriteString(v.String())
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		out.Write(b)
	}
	return nil
}

// snakeKeys reports whether every member name of data is lower-case snake
// case, as in the events billfn writes.
func snakeKeys(data []byte) bool {
	type frame struct{ object, key bool } // key: the next token is a member name
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return err == io.EOF
		}
		n := len(stack)
		if n > 0 && stack[n-1].key {
			if k, ok := tok.(string); ok {
				for _, c := range k {
					if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
						return false
					}
				}
				stack[n-1].key = false
				continue
			}
			stack = stack[:n-1] // '}'
			continue
		}
		if n > 0 && stack[n-1].object {
			stack[n-1].key = true // after this value, a name or '}'
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, key: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim(']'):
			stack = stack[:n-1]
			if n > 1 && stack[n-2].object {
				stack[n-2].key = true
			}
		}
	}
}
