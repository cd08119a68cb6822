package outbox_test

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// A publisher's batches go to Kafka uncompressed: an event is a kilobyte
// or two of JSON on loopback, and snappy cost the producing function its
// encoding and every consumer (the kafka-trigger) a decoding per batch
// fetched: 2 % of capture-payment's CPU and 6 % of the kafka-trigger's in
// make bench's payments (2026-12-05). The test counts the batches a
// consumer gets that it must decompress: none.
func TestPublishedBatchesNeedNoDecompression(t *testing.T) {
	cluster, err := testenv.NewKafka()
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	p, err := outbox.NewPassProducer(cluster.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 10
	var msgs []*sarama.ProducerMessage
	for i := range n {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: events.TopicPayment, Key: sarama.StringEncoder(fmt.Sprint(i)),
			Value: sarama.StringEncoder(`{"specversion":"1.0","type":"billfn.payment.captured","data":{"amount":1000,"currency":"EUR"}}`)})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, cluster.ListenAddrs(), events.TopicPayment, n)
	if len(recs) != n {
		t.Fatalf("%d records fetched, want %d", len(recs), n)
	}
	compressed := 0
	for _, r := range recs {
		if r.Attrs.CompressionType() != 0 {
			compressed++
		}
	}
	if compressed > 0 {
		t.Errorf("%d of %d records came in compressed batches (codec %d), want none", compressed, n, recs[0].Attrs.CompressionType())
	}
}
