package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
)

// fuzzRecords makes one to three records of values; those whose bit is
// set in binary are binary-mode (headers, "key: value" lines, plus
// ce_specversion when they lack it), the others carry headers only when
// they name no ce_ attribute.
func fuzzRecords(values [][]byte, binary uint8, headers string) []*sarama.ConsumerMessage {
	var hs []*sarama.RecordHeader
	hasSpec := false
	for _, line := range strings.Split(headers, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			hs = append(hs, &sarama.RecordHeader{Key: []byte(k), Value: []byte(strings.TrimSpace(v))})
			hasSpec = hasSpec || strings.EqualFold(k, "ce_specversion")
		}
	}
	if !hasSpec {
		hs = append(hs, &sarama.RecordHeader{Key: []byte("ce_specversion"), Value: []byte("1.0")})
	}
	msgs := make([]*sarama.ConsumerMessage, len(values))
	for i, v := range values {
		m := &sarama.ConsumerMessage{Topic: events.TopicPayment, Partition: 3, Offset: int64(100 + i), Key: []byte("k"), Value: v}
		if binary&(1<<i) != 0 {
			m.Headers = hs
		}
		msgs[i] = m
	}
	return msgs
}

// FuzzDelivery: records of a topic are grouped (inspect, splitBatch) and each group
// is sent as one request (delivery). No record is lost, reordered or sent
// twice; only structured JSON objects share a batch; and what the function
// parses from the request is, record for record, the event the trigger
// filtered on (inspect): a record skipped or sent by its type is the
// event the function would have seen. Records that are valid structured
// events, their attributes text Postgres holds (no U+0000, only UTF-8:
// Parse refuses the others, docs/events.md), always parse.
func FuzzDelivery(f *testing.F) {
	ev := `{"specversion":"1.0","id":"%s","source":"/functions/capture-payment","type":"billfn.payment.captured","data":{"amount":1}}`
	f.Add([]byte(strings.Replace(ev, "%s", "1", 1)), []byte(strings.Replace(ev, "%s", "2", 1)), []byte{}, uint8(0), "")
	f.Add([]byte(`{"amount":1}`), []byte{}, []byte{}, uint8(1), "ce_id: 1\nce_source: /x\nce_type: billfn.invoice.paid\ncontent-type: application/json")
	f.Add([]byte(strings.Replace(ev, "%s", "1", 1)), []byte(`not json`), []byte(`[]`), uint8(2), "ce_type: t")
	// A record whose value is two events must not bring the second into a batch.
	f.Add([]byte(strings.Replace(ev, "%s", "1", 1)+","+strings.Replace(ev, "%s", "2", 1)), []byte(strings.Replace(ev, "%s", "3", 1)), []byte{}, uint8(0), "")
	f.Fuzz(func(t *testing.T, a, b, c []byte, binary uint8, headers string) {
		values := [][]byte{a}
		if len(b) > 0 || len(c) > 0 {
			values = append(values, b)
		}
		if len(c) > 0 {
			values = append(values, c)
		}
		msgs := fuzzRecords(values, binary, headers)
		recs := make([]record, len(msgs))
		for i, m := range msgs {
			recs[i] = inspect(m)
		}
		groups := splitBatch(recs)
		var flat []*sarama.ConsumerMessage
		for _, g := range groups {
			if len(g) == 0 {
				t.Fatal("an empty group")
			}
			flat = append(flat, g...)
			if len(g) > 1 {
				for _, m := range g {
					if binaryMode(m) || !bytes.HasPrefix(bytes.TrimSpace(m.Value), []byte("{")) {
						t.Fatalf("record %q (binary %v) batched with others", m.Value, binaryMode(m))
					}
				}
			}
		}
		if len(flat) != len(msgs) {
			t.Fatalf("%d records grouped as %d", len(msgs), len(flat))
		}
		for i := range msgs {
			if flat[i] != msgs[i] {
				t.Fatalf("record %d moved", i)
			}
		}
		for _, g := range groups {
			body, pooled, h := delivery(g)
			if pooled != nil {
				defer releaseBatchBody(pooled)
			}
			r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
			r.Header = h
			evs, err := events.Parse(r, body)
			if err != nil {
				var pe *problem.Error
				if !errors.As(err, &pe) || problem.Common.Status(pe) != 400 {
					t.Fatalf("group of %d: %v is not a 400 problem", len(g), err)
				}
				valid := !binaryMode(g[0])
				for _, m := range g {
					ev, uerr := events.Unmarshal(m.Value)
					valid = valid && uerr == nil && textual(ev)
				}
				if valid {
					t.Fatalf("valid structured events %q were refused: %v", body, err)
				}
				continue
			}
			if len(evs) != len(g) {
				t.Fatalf("%d records delivered as %d events", len(g), len(evs))
			}
			for i, m := range g {
				// Up to invalid UTF-8 in a structured event, which
				// encoding/json replaces (the trigger reads the type as it
				// would) and the SDK keeps: type filters (YAML) are valid
				// UTF-8, so no decision changes. A binary event's ce_type
				// header is the same bytes on both sides.
				got := evs[i].Type()
				if !binaryMode(m) {
					got = validUTF8(got)
				}
				if filtered := inspect(m).typ; got != filtered {
					t.Fatalf("record %q (headers %q): the trigger filters on type %q, the function sees %q", m.Value, headers, filtered, got)
				}
			}
		}
	})
}

// textual reports whether ev's attributes hold text Postgres can store
// (no U+0000, only UTF-8): Parse refuses an event whose attributes do not
// (docs/events.md), so such a record is not a valid event here.
func textual(ev events.Event) bool {
	texts := []string{ev.ID(), ev.Type(), ev.Subject(), ev.DataContentType()}
	for _, v := range ev.Extensions() {
		if s, ok := v.(string); ok {
			texts = append(texts, s)
		}
	}
	for _, s := range texts {
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// validUTF8 is s as encoding/json reads it: each invalid byte replaced.
func validUTF8(s string) string {
	b, _ := json.Marshal(s)
	_ = json.Unmarshal(b, &s)
	return s
}

// FuzzInspectFor: for a function that wants only some types, the trigger
// skips a record only when the event in it is of a type the function
// does not want or when there is no event in it (not valid JSON: the
// function would refuse it); every record it keeps is read exactly as
// inspect reads it for a function that wants everything.
func FuzzInspectFor(f *testing.F) {
	ev := `{"specversion":"1.0","id":"1","source":"/functions/capture-payment","type":"%s","data":{"type":"x"}}`
	f.Add([]byte(strings.Replace(ev, "%s", "billfn.payment.captured", 1)), uint8(0), "", "billfn.payment.*")
	f.Add([]byte(strings.Replace(ev, "%s", "billfn.payment.created", 1)), uint8(0), "", "billfn.payment.captured")
	f.Add([]byte(`{"type":"billfn.payment.created","data":{`), uint8(0), "", "billfn.payment.captured")
	f.Add([]byte(`{"amount":1}`), uint8(1), "ce_id: 1\nce_source: /x\nce_type: billfn.invoice.paid", "billfn.invoice.*")
	f.Add([]byte(`not json`), uint8(0), "ce_type: billfn.invoice.paid", "billfn.refund.*")
	f.Fuzz(func(t *testing.T, v []byte, binary uint8, headers, types string) {
		sub, err := stackfile.ParseSubscription(map[string]string{stackfile.AnnotationTopic: events.TopicPayment, stackfile.AnnotationTypes: types})
		if err != nil {
			return
		}
		m := fuzzRecords([][]byte{v}, binary, headers)[0]
		all := inspect(m)
		r, kept := inspectFor(m, sub.Wants)
		if kept {
			if r.typ != all.typ || r.batchable != all.batchable || !bytes.Equal(r.tp, all.tp) || !bytes.Equal(r.ts, all.ts) {
				t.Fatalf("%q (headers %q): kept as %+v, inspect reads %+v", v, headers, r, all)
			}
			return
		}
		// all.typ is "" when the value is no JSON and no header names a type.
		if sub.Wants(all.typ) && (json.Valid(v) || all.typ != "") {
			t.Fatalf("%q (headers %q): skipped, but its event's type %q is wanted by %q", v, headers, all.typ, types)
		}
	})
}
