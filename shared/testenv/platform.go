package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/redis"
)

// JWTSecret and EventKey are the secrets of test deployments; each meets
// its minimum length (auth.MinHS256SecretLen, events.MinKeyLen: 32 bytes).
// JWTSecret serves only the tests of the opt-in HS256 configuration.
const (
	JWTSecret = "billfn-test-jwt-secret-0123456789abcdef"
	EventKey  = "billfn-test-event-signing-key-0123456789"
)

// The Ed25519 key pair of test deployments (EdDSA, the default): the
// functions under test verify with JWTPublicKey (PEM PKIX), Kit signs with
// JWTPrivateKey. Derived from a fixed seed, so a function started as a
// separate process in a test verifies the same tokens.
var (
	JWTPrivateKey = ed25519.NewKeyFromSeed([]byte("billfn-test-ed25519-seed-0123456"))
	JWTPublicKey  = func() string {
		_, pub, err := auth.Ed25519PEM(JWTPrivateKey, JWTPrivateKey.Public().(ed25519.PublicKey))
		if err != nil {
			panic(err)
		}
		return pub
	}()
)

// AuthConfig is the verifier configuration of test deployments.
func AuthConfig() auth.Config {
	return auth.Config{Alg: "EdDSA", PublicKey: JWTPublicKey, Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second, MaxLifetime: auth.DefaultMaxLifetimes()}
}

// NewSigner signs tokens AuthConfig's verifiers accept.
func NewSigner() *auth.Signer {
	s, err := auth.NewSigner(JWTPrivateKey, "billfn", "billfn")
	if err != nil {
		panic(err)
	}
	return s
}

// Kit is what a function test needs besides the function's dependencies.
type Kit struct {
	// Function is the name the function under test receives deliveries
	// as (its receiver's Consumer), which a delivery's signature names.
	Function string
	Signer   *auth.Signer
	Kafka    *kfake.Cluster
	Brokers  []string
	// Origins are the origin keys the function under test trusts (its
	// receiver's), which Delivery extends with a test's own sources.
	Origins *events.OriginKeys
}

// Token signs a token for sub with role, valid for an hour.
func (k *Kit) Token(tb testing.TB, sub string, role auth.Role) string {
	tb.Helper()
	tok, err := k.Signer.Sign(sub, role, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Authorize sets a bearer token on req.
func (k *Kit) Authorize(tb testing.TB, req *http.Request, sub string, role auth.Role) {
	req.Header.Set("Authorization", "Bearer "+k.Token(tb, sub, role))
}

// SignEvent signs an event delivery body to the function under test with
// the test event key, as the kafka-trigger does.
func (k *Kit) SignEvent(body []byte) string {
	return events.SignDelivery([]byte(EventKey), time.Now(), k.Function, body)
}

// Tick is the schedule tick the kafka-trigger sends a function's receiver:
// the cron-connector's empty POST /, signed with the test event key (an
// unsigned tick is refused with 401).
func (k *Kit) Tick() *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("X-Connector", "cron-connector")
	req.Header.Set("X-Topic", "cron-function")
	req.Header.Set(events.SignatureHeader, k.SignEvent(nil))
	return req
}

// Delivery is the request the kafka-trigger sends a function's receiver
// for evs: POST / signed with the test event key, one event in structured
// mode, several as a CloudEvents batch. Each event without an origin proof
// gets the one of its source's test key (OriginSigner), as its producer
// would sign it; a source the deployment does not know yet (a test's
// stand-in for an integrator, "/kcat") is first trusted with its test key,
// as an operator adds an integrator's key. An event that already carries a
// proof (a test's forgery) goes as it is.
func (k *Kit) Delivery(tb testing.TB, evs ...events.Event) *http.Request {
	tb.Helper()
	evs = slices.Clone(evs)
	for i := range evs {
		if _, signed := evs[i].Extensions()[events.OriginSigExt]; signed {
			continue
		}
		evs[i] = evs[i].Clone()
		s := OriginSigner(evs[i].Source())
		if k.Origins != nil && !k.Origins.Knows(evs[i].Source()) {
			k.Origins.Add(evs[i].Source(), s.Public())
		}
		s.Sign(&evs[i])
	}
	var (
		body []byte
		err  error
	)
	ct := events.ContentTypeStructured
	if len(evs) == 1 {
		body, err = events.Marshal(evs[0])
	} else {
		body, err = json.Marshal(evs)
		ct = events.ContentTypeBatch
	}
	if err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set(events.SignatureHeader, k.SignEvent(body))
	return req
}

// Platform opens a function's real dependencies for a test: this package's
// database, Redis under a private prefix, and a fresh in-process Kafka.
func Platform(tb testing.TB, name string) (*platform.Deps, *Kit) {
	tb.Helper()
	return PlatformWith(tb, name, nil)
}

// PlatformWith is Platform with its configuration changed by mutate first
// (nil: none), say to reach Postgres through a Proxy.
func PlatformWith(tb testing.TB, name string, mutate func(*platform.Config)) (*platform.Deps, *Kit) {
	tb.Helper()
	url := DatabaseURL(tb)
	rdb, prefix := Redis(tb)
	cluster, brokers := Kafka(tb)
	cfg := platform.Config{
		Postgres:  postgres.Config{URL: url, MaxConns: 20},
		Redis:     redis.Config{URL: "redis://" + rdb.Options().Addr + "/0", Prefix: prefix},
		Auth:      AuthConfig(),
		Kafka:     outbox.Config{Brokers: brokers},
		EventKeys: EventKey,
		// Every function and the test integrator are trusted sources;
		// the function signs what it publishes with its own test key.
		OriginPublicKeys: OriginPublicKeys(name),
		OriginPrivateKey: OriginKeyPEM(name),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := platform.OpenWith(context.Background(), name, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return d, &Kit{Function: name, Signer: NewSigner(), Kafka: cluster, Brokers: brokers, Origins: d.Events.Origins}
}

// NewUser returns a random user id.
func NewUser() string { return uuid.NewString() }
