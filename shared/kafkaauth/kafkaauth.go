// Package kafkaauth is how billfn's Kafka clients (the outbox publisher of
// every function, the kafka-trigger) authenticate to the broker: SASL
// SCRAM-SHA-512 as the process's own principal (kafka-acls.yaml), with the
// password read from a secret file, never from the environment.
//
// With no KAFKA_SASL_MECHANISM the client connects without SASL, so a plain
// broker (a test's kfake, a developer's own Kafka) still works.
package kafkaauth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/billfn/billfn/shared/config"
)

// Mechanisms supported by Apply.
const (
	ScramSHA512 = "SCRAM-SHA-512"
	ScramSHA256 = "SCRAM-SHA-256"
)

// Config is the Kafka authentication part of a process's configuration.
type Config struct {
	// Mechanism is the SASL mechanism: SCRAM-SHA-512 (or SCRAM-SHA-256);
	// empty connects without SASL.
	Mechanism string `envconfig:"KAFKA_SASL_MECHANISM"`
	// Username is the process's Kafka principal.
	Username string `envconfig:"KAFKA_USERNAME"`
	// Password is read by Load from the secret file
	// kafka-password-<Username> (SecretName), which holds one principal's
	// password, so a platform that names mounted files after secrets
	// (OpenFaaS) gives each process only its own.
	Password string `ignored:"true"`
}

// SecretName is the secret file that holds username's password.
func SecretName(username string) string { return "kafka-password-" + username }

// PasswordEnv is the environment fallback of the password (tests, a
// developer's shell); the platforms use the secret file.
const PasswordEnv = "KAFKA_PASSWORD"

// Load fills c.Password from the secret file of c.Username (see
// shared/config.Secret) and checks the settings: a mechanism needs a
// username and a password.
func (c *Config) Load() error {
	if c.Mechanism == "" {
		return nil
	}
	m := strings.ToUpper(strings.TrimSpace(c.Mechanism))
	if m != ScramSHA512 && m != ScramSHA256 {
		return fmt.Errorf("KAFKA_SASL_MECHANISM=%q: want %s or %s (or empty: no SASL)", c.Mechanism, ScramSHA512, ScramSHA256)
	}
	c.Mechanism = m
	if c.Username == "" {
		return fmt.Errorf("KAFKA_SASL_MECHANISM is %s but KAFKA_USERNAME is empty", m)
	}
	if c.Password == "" {
		v, ok, err := config.Secret(SecretName(c.Username), PasswordEnv)
		if err != nil {
			return err
		}
		if !ok || v == "" {
			return fmt.Errorf("KAFKA_USERNAME=%s: no password (secret file %s/%s, or %s)", c.Username,
				config.SecretsDir(), SecretName(c.Username), PasswordEnv)
		}
		c.Password = v
	}
	return nil
}

// Enabled reports whether the client authenticates.
func (c Config) Enabled() bool { return c.Mechanism != "" }

// Apply sets sarama's SASL settings from c (nothing when c is not
// Enabled). Call Load first.
func (c Config) Apply(sc *sarama.Config) error {
	if !c.Enabled() {
		return nil
	}
	if c.Username == "" || c.Password == "" {
		return fmt.Errorf("kafka SASL %s: username and password are required", c.Mechanism)
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.Version = sarama.SASLHandshakeV1
	sc.Net.SASL.User = c.Username
	sc.Net.SASL.Password = c.Password
	switch c.Mechanism {
	case ScramSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{sha512: true} }
	case ScramSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{} }
	default:
		return fmt.Errorf("kafka SASL mechanism %q is not supported", c.Mechanism)
	}
	return nil
}

// scramClient is sarama's SCRAMClient on franz-go's SCRAM client
// (pkg/sasl/scram, RFC 5802, in the module graph already for the
// kafka-trigger), which sends the credentials unprepared as Kafka's brokers
// want them: they salt a password as its UTF-8 bytes (Apache Kafka's
// ScramFormatter.normalize, and kfake), not SASLprep's form of it, which
// deletes or maps some characters and refuses others (an emoji), so
// prepared, such a password could never authenticate
// (TestTheBrokerGetsThePasswordAsItIs).
//
// It replaced xdg-go/scram, whose SASLprep tables (xdg-go/stringprep,
// never used here) cost every function 135 KB of heap built by their
// package init and 0.35 MB of binary, most of it resident: about 0.4 MB of
// each function's idle RSS (issue 20).
type scramClient struct {
	sha512 bool
	user   string
	pass   string
	sess   sasl.Session // nil until the client's first message
	done   bool
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	// franz-go's final message binds the GS2 header without an
	// authorization identity ("c=biws"); billfn never sets one.
	if authzID != "" {
		return errors.New("kafka SASL SCRAM: an authorization identity is not supported")
	}
	s.user, s.pass, s.sess, s.done = user, pass, nil, false
	return nil
}

// Step answers the server's challenge: the client's first message for
// the empty one that begins the exchange, then the client's proof for the
// server's first message; on the server's final message it checks the
// server's signature, and the exchange is done.
func (s *scramClient) Step(challenge string) (string, error) {
	if s.sess == nil {
		mech := scram.Auth{User: s.user, Pass: s.pass}.AsSha256Mechanism()
		if s.sha512 {
			mech = scram.Auth{User: s.user, Pass: s.pass}.AsSha512Mechanism()
		}
		sess, first, err := mech.Authenticate(context.Background(), "")
		if err != nil {
			return "", err
		}
		s.sess = sess
		return string(first), nil
	}
	done, resp, err := s.sess.Challenge([]byte(challenge))
	if err != nil {
		return "", err
	}
	s.done = done
	return string(resp), nil
}

func (s *scramClient) Done() bool { return s.done }
