package outbox_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// passOf is n records of a pass as read() builds them: keys spread over
// the topic's partitions, a value the size of a signed transfer event.
func passOf(n int) []*sarama.ProducerMessage {
	value := []byte(`{"specversion":"1.0","id":"` + strings.Repeat("x", 900) + `"}`)
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: "transaction-events", Key: sarama.StringEncoder(fmt.Sprintf("acct_%d", i)),
			Value:    sarama.ByteEncoder(value),
			Headers:  []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte(events.ContentTypeStructured)}},
			Metadata: int64(i)}
	}
	return msgs
}

func benchPasses(b *testing.B, prod interface {
	SendMessages([]*sarama.ProducerMessage) error
}) {
	for b.Loop() {
		if err := prod.SendMessages(passOf(16)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPassSaramaProducer sends passes of 16 records through sarama's
// SyncProducer, the relay's producer before passProducer (the
// kafka-trigger's dead-letter producer still), to compare with
// BenchmarkPassProducer. Both time kfake's work too, in this process.
func BenchmarkPassSaramaProducer(b *testing.B) {
	_, brokers := testenv.Kafka(b)
	prod, err := sarama.NewSyncProducer(brokers, outbox.ProducerConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	benchPasses(b, prod)
}

// BenchmarkPassProducer sends passes of 16 records as the relay does.
func BenchmarkPassProducer(b *testing.B) {
	_, brokers := testenv.Kafka(b)
	prod, err := outbox.NewPassProducer(brokers)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	benchPasses(b, prod)
}
