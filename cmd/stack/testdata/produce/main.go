// Command produce is an outside Kafka client for the system tests: it
// writes one record, read from standard input, with franz-go's kgo (not the
// sarama the functions and the kafka-trigger use), as kcat would:
//
//	produce -b 127.0.0.1:9092 -t transaction-events -k <key> -H content-type=application/cloudevents+json < event.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type headers []kgo.RecordHeader

func (h *headers) String() string { return fmt.Sprint(*h) }

func (h *headers) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("header %q: want name=value", v)
	}
	*h = append(*h, kgo.RecordHeader{Key: k, Value: []byte(val)})
	return nil
}

func main() {
	brokers := flag.String("b", "127.0.0.1:9092", "bootstrap brokers, comma-separated")
	topic := flag.String("t", "", "topic")
	key := flag.String("k", "", "record key")
	var hdrs headers
	flag.Var(&hdrs, "H", "header name=value (repeatable)")
	flag.Parse()
	value, err := io.ReadAll(os.Stdin)
	if err != nil || *topic == "" {
		fmt.Fprintln(os.Stderr, "produce: need -t and a value on stdin", err)
		os.Exit(2)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "produce:", err)
		os.Exit(1)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: *topic, Key: []byte(*key), Value: value, Headers: hdrs}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		fmt.Fprintln(os.Stderr, "produce:", err)
		os.Exit(1)
	}
	fmt.Printf("%s/%d@%d\n", rec.Topic, rec.Partition, rec.Offset)
}
