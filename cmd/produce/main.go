// Command produce writes one Kafka record, read from standard input, as
// kcat -P would, with franz-go's kgo (not the sarama the functions and the
// kafka-trigger use): the README's outside producer, and the system tests'
// (TestFlowKafkaProducedTransfer).
//
//	go run ./cmd/sign-event < event.json |
//	  go run ./cmd/produce -F bin/run/integrator.properties -t transaction-events -k <key> -H content-type=application/cloudevents+json
//
// -F reads librdkafka properties as kcat does (bootstrap.servers,
// security.protocol, sasl.mechanisms SCRAM-SHA-512, sasl.username,
// sasl.password); -b names the brokers of a broker without SASL; -P, kcat's
// producer mode, is accepted and changes nothing. It exists because
// Debian 12's kcat (librdkafka 2.0.2) cannot log in to the local broker:
// librdkafka before 2.6.1 requires SaslHandshake v0, which kfake does not
// serve (the same clients fail SCRAM against Apache Kafka 4.0,
// edenhill/kcat#462); a kcat on a newer librdkafka takes the same flags.
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
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// properties reads a librdkafka properties file into client options.
func properties(path string) ([]kgo.Opt, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not key=value", path, line)
		}
		p[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	var opts []kgo.Opt
	if bs := p["bootstrap.servers"]; bs != "" {
		opts = append(opts, kgo.SeedBrokers(strings.Split(bs, ",")...))
	}
	switch proto := p["security.protocol"]; proto {
	case "", "PLAINTEXT":
	case "SASL_PLAINTEXT":
		auth := scram.Auth{User: p["sasl.username"], Pass: p["sasl.password"]}
		switch p["sasl.mechanisms"] {
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(auth.AsSha512Mechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(auth.AsSha256Mechanism()))
		default:
			return nil, fmt.Errorf("%s: sasl.mechanisms %q not supported", path, p["sasl.mechanisms"])
		}
	default:
		return nil, fmt.Errorf("%s: security.protocol %q not supported", path, proto)
	}
	return opts, nil
}

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
	props := flag.String("F", "", "librdkafka properties file (kcat -F)")
	topic := flag.String("t", "", "topic")
	key := flag.String("k", "", "record key")
	var hdrs headers
	flag.Var(&hdrs, "H", "header name=value (repeatable)")
	flag.Bool("P", true, "producer mode (kcat's flag; the only mode)")
	flag.Parse()
	value, err := io.ReadAll(os.Stdin)
	if err != nil || *topic == "" {
		fmt.Fprintln(os.Stderr, "produce: need -t and a value on stdin", err)
		os.Exit(2)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(*brokers, ",")...), kgo.RequiredAcks(kgo.AllISRAcks())}
	if *props != "" {
		more, err := properties(*props)
		if err != nil {
			fmt.Fprintln(os.Stderr, "produce:", err)
			os.Exit(2)
		}
		opts = append(opts, more...)
	}
	cl, err := kgo.NewClient(opts...)
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
