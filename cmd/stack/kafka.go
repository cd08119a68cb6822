package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/billfn/billfn/cmd/internal/kafkaacl"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/platform"
)

// The local broker enforces kafka-acls.yaml as the cluster does: kfake with
// SASL/SCRAM-SHA-512 and ACLs on, one user per principal of the table with
// exactly its rights, and one superuser, the stack itself (it creates the
// ACLs after a restart; the stack's tests read every topic as it). The
// passwords are generated on the first start and kept in bin/run/secrets
// (kafka-password-<principal>); each function and the kafka-trigger find
// only their own in their SECRETS_DIR.

// kafkaSuperuser is the stack's own Kafka user, which bypasses every ACL.
// No process of the system gets its password.
const kafkaSuperuser = "billfn-stack"

// integratorProperties is the integrator's librdkafka settings, written by
// every start: kcat -F bin/run/integrator.properties.
const integratorProperties = "integrator.properties"

// aclTable loads kafka-acls.yaml from beside the stack file.
func aclTable(cfg config) (*kafkaacl.Table, error) {
	t, err := kafkaacl.Load(filepath.Join(filepath.Dir(cfg.StackFile), kafkaacl.File))
	if err != nil {
		return nil, userErrorf("the Kafka ACL table: %v", err)
	}
	return t, nil
}

// kafkaPasswordNames are the secrets holding the Kafka passwords: every
// principal's and the superuser's.
func kafkaPasswordNames(cfg config) ([]string, error) {
	t, err := aclTable(cfg)
	if err != nil {
		return nil, err
	}
	names := []string{kafkaacl.PasswordSecret(kafkaSuperuser)}
	for _, p := range t.Names() {
		names = append(names, kafkaacl.PasswordSecret(p))
	}
	return names, nil
}

// processNames are the processes that get a secrets directory of their
// own: every function and the kafka-trigger.
func processNames(st *stackfile.Stack) []string {
	return append(st.Names(), kafkaacl.Trigger)
}

// isKafkaPassword reports whether a secret is a Kafka password.
func isKafkaPassword(name string) bool { return strings.HasPrefix(name, kafkaacl.PasswordSecret("")) }

// writeProcessSecrets makes fdir hold one directory per process, each with
// names less every Kafka password but the process's own (and never the
// superuser's), removing whatever else an earlier version left there.
func writeProcessSecrets(fdir string, procs, names []string, values map[string]string) error {
	entries, err := os.ReadDir(fdir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || !slices.Contains(procs, e.Name()) {
			if err := os.RemoveAll(filepath.Join(fdir, e.Name())); err != nil {
				return err
			}
		}
	}
	for _, proc := range procs {
		var own []string
		for _, n := range names {
			if (!isKafkaPassword(n) || n == kafkaacl.PasswordSecret(proc)) && (!isOriginKey(n) || n == platform.OriginKeySecret(proc)) {
				own = append(own, n)
			}
		}
		dir := filepath.Join(fdir, proc)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := writeFunctionSecrets(dir, own, values); err != nil {
			return err
		}
	}
	return nil
}

// kafkaEnv is the environment that makes a process authenticate as
// principal (its password is in its SECRETS_DIR).
func kafkaEnv(principal string) []string {
	return []string{"KAFKA_SASL_MECHANISM=" + kafkaacl.Mechanism, "KAFKA_USERNAME=" + principal}
}

// kafkaOpts are kfake's options for the table: SASL, ACLs, the superuser
// and one user per principal.
func (s *stack) kafkaOpts() ([]kfake.Opt, error) {
	t, err := aclTable(s.cfg)
	if err != nil {
		return nil, err
	}
	pass := func(p string) string { return s.secrets[kafkaacl.PasswordSecret(p)] }
	for _, p := range append(t.Names(), kafkaSuperuser) {
		if pass(p) == "" {
			return nil, fmt.Errorf("no Kafka password for %s", p)
		}
	}
	return t.Kfake(kafkaSuperuser, pass(kafkaSuperuser), pass), nil
}

// forgetKafkaAuth removes the users and ACLs kfake persisted in its data
// directory: they are derived from the table and the secrets on every
// start, so a principal or a right taken out of the table is gone after
// the next start, and a password rotated in bin/run/secrets applies.
func forgetKafkaAuth(dataDir string) error {
	for _, f := range []string{"acls.json", "sasl.json"} {
		if err := os.Remove(filepath.Join(dataDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// applyACLs creates the table's ACLs through the broker's admin API as the
// superuser, as Strimzi's User Operator does on a cluster. kfake seeds
// them itself only into an empty data directory; on a restart with data
// this is what puts them back. Creating an existing ACL changes nothing.
func (s *stack) applyACLs(ctx context.Context) error {
	t, err := aclTable(s.cfg)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.KafkaAddr),
		kgo.SASL(scram.Auth{User: kafkaSuperuser, Pass: s.secrets[kafkaacl.PasswordSecret(kafkaSuperuser)]}.AsSha512Mechanism()))
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateACLsRequest()
	for _, p := range t.Principals {
		for _, a := range p.ACLs() {
			c := kmsg.NewCreateACLsRequestCreation()
			c.ResourceType, c.ResourceName, c.ResourcePatternType = a.Resource, a.Name, a.Pattern
			c.Principal, c.Host, c.Operation = "User:"+p.Name, "*", a.Operation
			c.PermissionType = kmsg.ACLPermissionTypeAllow
			req.Creations = append(req.Creations, c)
		}
	}
	if len(req.Creations) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("create the Kafka ACLs: %w", err)
	}
	for i, r := range resp.Results {
		if r.ErrorCode != 0 {
			msg := ""
			if r.ErrorMessage != nil {
				msg = *r.ErrorMessage
			}
			return fmt.Errorf("create the Kafka ACL %+v: error %d %s", req.Creations[i], r.ErrorCode, msg)
		}
	}
	return nil
}

// writeIntegratorProperties writes the integrator principal's librdkafka
// settings (kcat -F, any librdkafka client) into the run directory.
func (s *stack) writeIntegratorProperties() (string, error) {
	path := filepath.Join(s.cfg.RunDir, integratorProperties)
	body := strings.Join([]string{
		"# The integrator's Kafka settings (kafka-acls.yaml): it may produce to",
		"# transaction-events only. Written by make run on every start;",
		"# the password is bin/run/secrets/" + kafkaacl.PasswordSecret(kafkaacl.Integrator) + ".",
		"#   go run ./cmd/produce -F " + filepath.Join("bin", "run", integratorProperties) + " -t transaction-events ...",
		"# (kcat -F takes it too, on librdkafka 2.6.1 or later: see the README)",
		"bootstrap.servers=" + s.cfg.KafkaAddr,
		"security.protocol=SASL_PLAINTEXT",
		"sasl.mechanisms=" + kafkaacl.Mechanism,
		"sasl.username=" + kafkaacl.Integrator,
		"sasl.password=" + s.secrets[kafkaacl.PasswordSecret(kafkaacl.Integrator)],
		"",
	}, "\n")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// kafkaReadBuffer is the read buffer of each Kafka connection the broker
// accepts: a produce or fetch request of billfn's fits in it whole.
const kafkaReadBuffer = 16 << 10

// bufferedListener gives each connection it accepts a read buffer. kfake
// reads a request's 4-byte size and then its body with two reads straight
// from the socket: two system calls per Kafka request, where one read into
// a buffer takes both (and any request the client pipelined behind it).
type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, kafkaReadBuffer)}, nil
}

// bufferedConn reads through its buffer; everything else is the
// connection's (kfake reads each connection from one goroutine at a time).
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
