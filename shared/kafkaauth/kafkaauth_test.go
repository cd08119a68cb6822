package kafkaauth

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/billfn/billfn/shared/config"
)

func TestNoMechanismMeansNoSASL(t *testing.T) {
	c := Config{}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	sc := sarama.NewConfig()
	if err := c.Apply(sc); err != nil {
		t.Fatal(err)
	}
	if sc.Net.SASL.Enable {
		t.Error("SASL enabled without a mechanism")
	}
}

// The password comes from the principal's own secret file, never from a
// file named for another principal; a mechanism without a username or a
// password stops the process at start-up.
func TestPasswordFromTheSecretFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	t.Setenv(PasswordEnv, "")
	os.WriteFile(filepath.Join(dir, "kafka-password-other"), []byte("not-mine"), 0o600)

	c := Config{Mechanism: "scram-sha-512", Username: "capture-payment"}
	if err := c.Load(); err == nil || !strings.Contains(err.Error(), "kafka-password-capture-payment") {
		t.Fatalf("no password file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "kafka-password-capture-payment"), []byte("s3cret-value\n"), 0o600)
	c = Config{Mechanism: "scram-sha-512", Username: "capture-payment"}
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	if c.Password != "s3cret-value" || c.Mechanism != ScramSHA512 {
		t.Errorf("loaded %+v", c)
	}
	sc := sarama.NewConfig()
	if err := c.Apply(sc); err != nil {
		t.Fatal(err)
	}
	if !sc.Net.SASL.Enable || sc.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA512 || sc.Net.SASL.User != "capture-payment" ||
		sc.Net.SASL.SCRAMClientGeneratorFunc == nil || sc.Validate() != nil {
		t.Errorf("sarama SASL settings %+v (%v)", sc.Net.SASL, sc.Validate())
	}
	for name, bad := range map[string]Config{
		"no username":       {Mechanism: ScramSHA512},
		"unknown mechanism": {Mechanism: "PLAIN", Username: "capture-payment"},
	} {
		if err := bad.Load(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Kafka's brokers salt a SCRAM password as its UTF-8 bytes, without
// SASLprep (Apache Kafka's ScramFormatter.normalize; kfake does the same),
// so the client must send the password as it is: prepared, a soft hyphen
// (U+00AD) is deleted and a no-break space (U+00A0) becomes a space, and a
// code point unassigned in Unicode 3.2 (an emoji) is refused, and the
// client proves a password the broker does not hold. A wrong password
// still fails.
func TestTheBrokerGetsThePasswordAsItIs(t *testing.T) {
	for _, mech := range []string{ScramSHA512, ScramSHA256} {
		for _, pass := range []string{"plain-ascii-Pass1", "soft\u00adhyphen", "no\u00a0break space", "key \U0001F511 emoji"} {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
				kfake.Superuser(mech, "admin", "admin-pass"), kfake.User(mech, "billfn", pass))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			for _, try := range []struct {
				pass string
				ok   bool
			}{{pass, true}, {pass + "x", false}} {
				sc := sarama.NewConfig()
				sc.Net.DialTimeout, sc.Metadata.Retry.Max = 5*time.Second, 0
				if err := (Config{Mechanism: mech, Username: "billfn", Password: try.pass}).Apply(sc); err != nil {
					t.Fatal(err)
				}
				cl, err := sarama.NewClient(c.ListenAddrs(), sc)
				if err == nil {
					cl.Close()
				}
				if (err == nil) != try.ok {
					t.Errorf("%s, password %q against %q: connected %v (%v)", mech, try.pass, pass, err == nil, err)
				}
			}
		}
	}
}

// The client proves the password and checks the broker's proof in turn: a
// server-final message with another signature, or an error, ends the
// exchange in an error, never done.
func TestTheClientChecksTheBrokersSignature(t *testing.T) {
	for _, final := range []string{"v=" + base64.StdEncoding.EncodeToString(make([]byte, 64)), "e=invalid-proof", "x=1"} {
		c := &scramClient{sha512: true}
		if err := c.Begin("billfn", "pass", ""); err != nil {
			t.Fatal(err)
		}
		first, err := c.Step("")
		if err != nil || !strings.HasPrefix(first, "n,,n=billfn,r=") {
			t.Fatalf("client-first %q (%v)", first, err)
		}
		nonce := strings.TrimPrefix(first, "n,,n=billfn,r=")
		proof, err := c.Step("r=" + nonce + "server,s=" + base64.StdEncoding.EncodeToString([]byte("salt")) + ",i=4096")
		if err != nil || !strings.HasPrefix(proof, "c=biws,r="+nonce+"server,p=") || c.Done() {
			t.Fatalf("client-final %q (%v), done %v", proof, err, c.Done())
		}
		if _, err := c.Step(final); err == nil || c.Done() {
			t.Errorf("server-final %q: accepted (done %v)", final, c.Done())
		}
	}
	// A server nonce that does not extend the client's is refused.
	c := &scramClient{}
	c.Begin("billfn", "pass", "")
	c.Step("")
	if _, err := c.Step("r=other,s=c2FsdA==,i=4096"); err == nil {
		t.Error("a server nonce not beginning with the client's was accepted")
	}
	if err := (&scramClient{}).Begin("billfn", "pass", "someone-else"); err == nil {
		t.Error("an authorization identity was accepted (the final message would not bind it)")
	}
}
