package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/kafkaauth"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// The publisher's producer places each record where sarama's producer
// (the relay's before, and the DLQ's still) places it, so a key's events
// stay in one partition across the change and across producers, and it
// keeps a pass's order within a partition, with the record's headers.
func TestAPassGoesWhereSaramasProducerPutsItsKeysInOrder(t *testing.T) {
	_, brokers := testenv.Kafka(t)
	const keys, each = 40, 5
	pass := func(tag string) []*sarama.ProducerMessage {
		var msgs []*sarama.ProducerMessage
		for i := range each {
			for k := range keys {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: events.TopicTransaction,
					Key:     sarama.StringEncoder(fmt.Sprintf("acct_%d", k)),
					Value:   sarama.StringEncoder(fmt.Sprintf("%s/%d/%d", tag, k, i)),
					Headers: []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte(events.ContentTypeStructured)}}})
			}
		}
		return msgs
	}
	old, err := sarama.NewSyncProducer(brokers, outbox.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := old.SendMessages(pass("sarama")); err != nil {
		t.Fatal(err)
	}
	old.Close()
	prod, err := outbox.NewPassProducer(brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.SendMessages(pass("pass")); err != nil {
		t.Fatal(err)
	}

	recs := consume(t, brokers, events.TopicTransaction, 2*keys*each)
	if len(recs) != 2*keys*each {
		t.Fatalf("%d records, want %d", len(recs), 2*keys*each)
	}
	partition := map[string]map[string]int32{"sarama": {}, "pass": {}} // producer → key → partition
	next := map[string]int{}                                           // producer/key → the next i due
	for _, r := range recs {
		var tag string
		var k, i int
		if _, err := fmt.Sscanf(strings.ReplaceAll(string(r.Value), "/", " "), "%s %d %d", &tag, &k, &i); err != nil {
			t.Fatalf("record %q: %v", r.Value, err)
		}
		if string(r.Key) != fmt.Sprintf("acct_%d", k) {
			t.Fatalf("record %q has key %q", r.Value, r.Key)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "content-type" || string(r.Headers[0].Value) != events.ContentTypeStructured {
			t.Fatalf("record %q has headers %v", r.Value, r.Headers)
		}
		if p, ok := partition[tag][string(r.Key)]; ok && p != r.Partition {
			t.Fatalf("%s put key %s in partitions %d and %d", tag, r.Key, p, r.Partition)
		}
		partition[tag][string(r.Key)] = r.Partition
		// Records of a partition arrive in offset order: a key's in the order sent.
		if seq := tag + "/" + string(r.Key); next[seq] != i {
			t.Fatalf("%s: key %s's record %d arrived where %d was due", tag, r.Key, i, next[seq])
		}
		next[tag+"/"+string(r.Key)]++
	}
	used := map[int32]bool{}
	for key, p := range partition["sarama"] {
		if partition["pass"][key] != p {
			t.Errorf("key %s: sarama's producer put it in partition %d, the pass producer in %d", key, p, partition["pass"][key])
		}
		used[p] = true
	}
	if len(used) < 2 {
		t.Fatalf("the keys all went to %d partition(s): the test shows nothing", len(used))
	}
}

// A pass Kafka accepts in part (here its principal may write to one of
// the topics, not the other) relays what was accepted, keeps only the
// refused rows, with the broker's reason, and its next pass relays them
// once the broker accepts them.
func TestAPassKafkaRefusesInPartKeepsOnlyTheRefusedRows(t *testing.T) {
	pool := testenv.Pool(t)
	const user, pass = "relay", "relay-password"
	writeOnly := func(topic string) kfake.ACL {
		return kfake.ACL{Name: topic, Allow: true, Resource: kmsg.ACLResourceTypeTopic,
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationWrite}
	}
	_, brokers := testenv.Kafka(t, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "admin", "admin-password"),
		kfake.User("SCRAM-SHA-512", user, pass, writeOnly(events.TopicTransaction)))
	source := "fn-" + uuid.NewString()[:8]
	transfers := write(t, pool, source, 6)
	payments := writeTo(t, pool, source, events.TopicPayment, 4)

	pub := outbox.NewPublisher(pool, source, brokers)
	pub.Auth = kafkaauth.Config{Mechanism: "SCRAM-SHA-512", Username: user, Password: pass}
	defer pub.Close(context.Background())
	n, err := pub.Sweep(context.Background())
	if err == nil || n != len(transfers) {
		t.Fatalf("sweep = %d, %v; want %d relayed and an error for the rest", n, err, len(transfers))
	}
	var left int
	var reason string
	if err := pool.QueryRow(context.Background(), `SELECT count(*), coalesce(min(last_error), '') FROM outbox WHERE source = $1 AND topic = $2`,
		source, events.TopicPayment).Scan(&left, &reason); err != nil {
		t.Fatal(err)
	}
	if left != len(payments) || backlog(t, pool, source) != len(payments) || !strings.Contains(strings.ToLower(reason), "authoriz") {
		t.Fatalf("after the sweep: %d of the refused topic's rows left (want %d), %d in all, reason %q",
			left, len(payments), backlog(t, pool, source), reason)
	}
	admin := kgo.SASL(scram.Auth{User: "admin", Pass: "admin-password"}.AsSha512Mechanism())
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(transfers), admin), transfers)

	// The operator grants the write; the next pass relays the rows left.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	grant := kmsg.NewCreateACLsRequestCreation()
	grant.ResourceType, grant.ResourceName, grant.ResourcePatternType = kmsg.ACLResourceTypeTopic, events.TopicPayment, kmsg.ACLResourcePatternTypeLiteral
	grant.Principal, grant.Host = "User:"+user, "*"
	grant.Operation, grant.PermissionType = kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeAllow
	req := kmsg.NewPtrCreateACLsRequest()
	req.Creations = append(req.Creations, grant)
	res, err := req.RequestWith(context.Background(), cl)
	if err != nil || len(res.Results) != 1 || res.Results[0].ErrorCode != 0 {
		t.Fatalf("grant the write: %+v, %v", res, err)
	}
	if n, err := pub.Sweep(context.Background()); err != nil || n != len(payments) {
		t.Fatalf("sweep after the grant = %d, %v; want %d", n, err, len(payments))
	}
	checkRecords(t, consume(t, brokers, events.TopicPayment, len(payments), admin), payments)
}
