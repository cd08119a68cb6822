package kafkaauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"

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
