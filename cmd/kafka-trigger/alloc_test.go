package main

import (
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/events"
)

// A structured record's delivery request is built with a few allocations
// (the header map, the values' one backing array, the formatted values'
// one string), not one or two per header: 16 before headerValues.
func TestADeliverysHeadersAllocateLittle(t *testing.T) {
	m := &sarama.ConsumerMessage{Topic: "payment-events", Partition: 3, Offset: 123456,
		Key: []byte("0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3c"), Timestamp: time.Date(2026, 12, 4, 21, 0, 0, 123456000, time.UTC),
		Value: []byte(`{"specversion":"1.0","id":"x","type":"billfn.payment.authorized","data":{}}`)}
	msgs := []*sarama.ConsumerMessage{m}
	_, _, h := delivery(msgs)
	want := map[string]string{"Content-Type": events.ContentTypeStructured, "X-Topic": "payment-events",
		"X-Kafka-Partition": "3", "X-Kafka-Offset": "123456", "X-Kafka-Timestamp": "2026-12-04T21:00:00.123456Z",
		"X-Kafka-Key": "0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3c", "X-Connector": "kafka-trigger", "User-Agent": "billfn-kafka-trigger"}
	if len(h) != len(want) {
		t.Errorf("headers %v, want %v", h, want)
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// An Add to one header does not write over its neighbour's value.
	h.Add("X-Topic", "other")
	if h.Get("X-Kafka-Partition") != "3" || len(h["X-Topic"]) != 2 {
		t.Errorf("after an Add: %v", h)
	}
	if n := testing.AllocsPerRun(200, func() { delivery(msgs) }); n > 8 {
		t.Errorf("a structured record's delivery request: %v allocations, want at most 8", n)
	}
}

// sign, an idle events.Signer's signature, is events.SignDelivery, byte
// for byte, also across a key rotation, with one allocation (its result)
// where events.SignDelivery makes 12 (hmac.New each time).
func TestSignIsEventsSignAndAllocatesOnce(t *testing.T) {
	keys := [][]byte{[]byte(strings.Repeat("k", 32)), []byte(strings.Repeat("r", 48))}
	body := []byte(`{"specversion":"1.0","id":"x","type":"billfn.payment.authorized","data":{}}`)
	now := time.Unix(1796418000, 0)
	const fn = "capture-payment"
	for i := range 6 {
		k, b, at := keys[i%2], body[:len(body)-i], now.Add(time.Duration(i)*time.Second)
		if got, want := sign(k, at, fn, b), events.SignDelivery(k, at, fn, b); got != want {
			t.Fatalf("sign %q, events.SignDelivery %q", got, want)
		}
		if err := events.VerifyDelivery(keys[i%2:i%2+1], sign(k, at, fn, b), fn, b, at, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := sign(keys[0], now, fn, nil), events.SignDelivery(keys[0], now, fn, nil); got != want {
		t.Fatalf("no body: sign %q, events.SignDelivery %q", got, want)
	}
	if n := testing.AllocsPerRun(200, func() { sign(keys[0], now, fn, body) }); n > 1 {
		t.Errorf("sign: %v allocations, want 1", n)
	}
}

// A consumer group reads every record of its topics; one of a type its
// claim has read before is read without an allocation (its type was
// copied into a new string each time: 1 allocation per record and group),
// in structured and in binary mode, and the type read is the same.
func TestARecordOfAKnownTypeIsReadWithoutAllocating(t *testing.T) {
	structured := &sarama.ConsumerMessage{Topic: "payment-events",
		Value: []byte(`{"specversion":"1.0","id":"x","type":"billfn.payment.authorized","data":{}}`)}
	binary := &sarama.ConsumerMessage{Topic: "payment-events", Value: []byte(`{}`), Headers: []*sarama.RecordHeader{
		{Key: []byte("ce_specversion"), Value: []byte("1.0")}, {Key: []byte("ce_type"), Value: []byte("billfn.payment.captured")}}}
	wants := func(typ string) bool { return strings.HasPrefix(typ, "billfn.payment.") }
	names := typeNames{}
	for _, c := range []struct {
		m   *sarama.ConsumerMessage
		typ string
	}{{structured, "billfn.payment.authorized"}, {binary, "billfn.payment.captured"}} {
		if r, ok := inspectWith(c.m, wants, names); !ok || r.typ != c.typ {
			t.Fatalf("type %q (wanted %v), want %q", r.typ, ok, c.typ)
		}
		if n := testing.AllocsPerRun(200, func() { inspectWith(c.m, wants, names) }); n != 0 {
			t.Errorf("a record of type %s: %v allocations, want 0", c.typ, n)
		}
	}
	// The names kept are bounded, whatever types records claim.
	for i := range 2 * maxTypeNames {
		m := &sarama.ConsumerMessage{Value: []byte(`{"type":"t` + strings.Repeat("x", i) + `"}`)}
		inspectWith(m, wants, names)
	}
	if len(names) > maxTypeNames {
		t.Errorf("%d type names kept, want at most %d", len(names), maxTypeNames)
	}
}
