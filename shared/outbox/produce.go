package outbox

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// passProducer sends a pass's records to Kafka in one Produce request per
// leader broker (one, on a cluster of one) and returns when each is
// answered: a pass already is a batch, in the order the outbox holds it,
// so it needs none of what sarama's producer adds around a request — a
// goroutine pipeline (dispatcher, topic, partition, aggregator and flusher
// goroutines, a channel hop each per record), its own batching and retries
// — which cost more CPU than the request itself (the producer was 15 % of
// process-transaction's CPU in make bench's profiles, 2026-12-07).
//
// Records go as the partitioner sarama's producer uses by default (a
// hash of the key, sarama.NewHashPartitioner) places them, so a key keeps
// its partition whichever producer wrote its earlier events, and in their
// pass's order within it. A partition the broker refuses fails its
// records only (sarama.ProducerErrors, as SendMessages of sarama's
// producer); they stay in the outbox for the next pass, which sends them
// before any younger row of their key. A request that fails as a whole
// (connection lost, no answer) fails the pass. It is not sarama's
// idempotent producer, whose sequence numbers only let the broker drop the
// duplicates of its own retries: it retries nothing, and a pass that
// fails after the broker wrote its records sends them again, as a pass
// always could (a relay killed between Kafka's ack and its DELETE);
// consumers apply each event id once.
type passProducer struct {
	client sarama.Client
	conf   *sarama.Config
	parts  map[string]sarama.Partitioner // per topic, as sarama keeps them
}

func newPassProducer(brokers []string, conf *sarama.Config) (*passProducer, error) {
	client, err := sarama.NewClient(brokers, conf)
	if err != nil {
		return nil, err
	}
	return &passProducer{client: client, conf: conf, parts: map[string]sarama.Partitioner{}}, nil
}

func (p *passProducer) Close() error { return p.client.Close() }

// produceVersion is the Produce request version sent: 9, the one
// sarama's producer sends for ProducerConfig's Kafka version (3.6; 9 is
// understood from Kafka 2.8 on), record batches in the v2 format.
const produceVersion = 9

type partitionKey struct {
	topic     string
	partition int32
}

// leaderRequest is what one broker is sent: a record batch per partition,
// and which messages each holds.
type leaderRequest struct {
	broker  *sarama.Broker
	req     *sarama.ProduceRequest
	batches map[partitionKey]*sarama.RecordBatch
	msgs    map[partitionKey][]*sarama.ProducerMessage
}

// SendMessages sends msgs and returns nil when Kafka acknowledged all of
// them, sarama.ProducerErrors naming those it refused, or another error
// when none can be known to have been written.
func (p *passProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	now := time.Now().Truncate(time.Millisecond)
	byLeader := map[int32]*leaderRequest{}
	var perrs sarama.ProducerErrors
	for _, m := range msgs {
		lr, pk, err := p.place(m, byLeader)
		if err != nil {
			perrs = append(perrs, &sarama.ProducerError{Msg: m, Err: err})
			continue
		}
		rec := &sarama.Record{}
		if rec.Key, err = encode(m.Key); err == nil {
			rec.Value, err = encode(m.Value)
		}
		if err != nil {
			perrs = append(perrs, &sarama.ProducerError{Msg: m, Err: err})
			continue
		}
		b := lr.batches[pk]
		if b == nil {
			b = &sarama.RecordBatch{Version: 2, FirstTimestamp: now, MaxTimestamp: now,
				ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, Codec: sarama.CompressionNone}
			lr.batches[pk] = b
			lr.req.AddBatch(pk.topic, pk.partition, b)
		}
		rec.OffsetDelta = int64(len(b.Records))
		if len(m.Headers) > 0 {
			rec.Headers = make([]*sarama.RecordHeader, len(m.Headers))
			for i := range m.Headers {
				rec.Headers[i] = &m.Headers[i]
			}
		}
		b.Records = append(b.Records, rec)
		b.LastOffsetDelta = int32(len(b.Records) - 1)
		m.Partition, m.Timestamp = pk.partition, now
		lr.msgs[pk] = append(lr.msgs[pk], m)
	}
	var (
		mu      sync.Mutex
		whole   error // a request that failed as a whole
		wg      sync.WaitGroup
		refresh []string
	)
	send := func(lr *leaderRequest) {
		res, err := lr.broker.Produce(lr.req)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			whole = fmt.Errorf("produce to broker %d: %w", lr.broker.ID(), err)
			return
		}
		for pk, ms := range lr.msgs {
			var err error
			if blk := res.GetBlock(pk.topic, pk.partition); blk == nil {
				err = sarama.ErrIncompleteResponse
			} else if blk.Err != sarama.ErrNoError {
				err = blk.Err
			}
			if err == nil {
				continue
			}
			if errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrUnknownTopicOrPartition) ||
				errors.Is(err, sarama.ErrLeaderNotAvailable) {
				refresh = append(refresh, pk.topic)
			}
			for _, m := range ms {
				perrs = append(perrs, &sarama.ProducerError{Msg: m, Err: err})
			}
		}
	}
	for _, lr := range byLeader {
		if len(byLeader) == 1 {
			send(lr)
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); send(lr) }()
	}
	wg.Wait()
	if len(refresh) > 0 {
		_ = p.client.RefreshMetadata(refresh...)
	}
	if whole != nil {
		return whole
	}
	if len(perrs) > 0 {
		return perrs
	}
	return nil
}

// place finds m's partition and its leader's request.
func (p *passProducer) place(m *sarama.ProducerMessage, byLeader map[int32]*leaderRequest) (*leaderRequest, partitionKey, error) {
	partitions, err := p.client.Partitions(m.Topic)
	if err != nil {
		return nil, partitionKey{}, err
	}
	if len(partitions) == 0 {
		return nil, partitionKey{}, sarama.ErrLeaderNotAvailable
	}
	part := p.parts[m.Topic]
	if part == nil {
		part = p.conf.Producer.Partitioner(m.Topic)
		p.parts[m.Topic] = part
	}
	choice, err := part.Partition(m, int32(len(partitions)))
	if err != nil {
		return nil, partitionKey{}, err
	}
	if choice < 0 || int(choice) >= len(partitions) {
		return nil, partitionKey{}, sarama.ErrInvalidPartition
	}
	pk := partitionKey{m.Topic, partitions[choice]}
	leader, err := p.client.Leader(pk.topic, pk.partition)
	if err != nil {
		return nil, pk, err
	}
	lr := byLeader[leader.ID()]
	if lr == nil {
		lr = &leaderRequest{broker: leader, batches: map[partitionKey]*sarama.RecordBatch{},
			msgs: map[partitionKey][]*sarama.ProducerMessage{},
			req: &sarama.ProduceRequest{Version: produceVersion, RequiredAcks: p.conf.Producer.RequiredAcks,
				Timeout: int32(p.conf.Producer.Timeout / time.Millisecond)}}
		byLeader[leader.ID()] = lr
	}
	return lr, pk, nil
}

func encode(e sarama.Encoder) ([]byte, error) {
	if e == nil {
		return nil, nil
	}
	return e.Encode()
}
