// Package kafkaacl reads kafka-acls.yaml, the one table of billfn's Kafka
// principals and their rights, and turns it into the ACLs both worlds
// enforce: kfake's users for the local stack (cmd/stack) and the Strimzi
// KafkaUsers of the cluster (checked by cmd/internal/deploycheck).
package kafkaacl

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.yaml.in/yaml/v3"
)

// File is the table's path from the repository root (the directory
// holding stack.yml), beside the KafkaUsers it is rendered into.
const File = "knative/infra/kafka-acls.yaml"

// Mechanism is the SASL mechanism every principal authenticates with.
const Mechanism = "SCRAM-SHA-512"

// Trigger and Integrator are the two principals that are no function.
const (
	Trigger    = "kafka-trigger"
	Integrator = "integrator"
)

// PasswordSecret is the name of the secret holding principal's password:
// the file a process reads it from (shared/kafkaauth) and, locally, the
// file under bin/run/secrets.
func PasswordSecret(principal string) string { return "kafka-password-" + principal }

// Principal is one Kafka user and its rights.
type Principal struct {
	Name string `yaml:"name"`
	// Write are the topics it may produce to.
	Write []string `yaml:"write"`
	// Read are the topics it may consume.
	Read []string `yaml:"read"`
	// Groups are the consumer-group name prefixes it may use.
	Groups []string `yaml:"groups"`
	// Commands are the command types it produces (documentation and the
	// check against the event contract).
	Commands []string `yaml:"commands"`
}

// Table is kafka-acls.yaml.
type Table struct {
	Principals []Principal `yaml:"principals"`
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Load reads the table at path (a file, or the directory holding File).
func Load(path string) (*Table, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, File)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse reads a table and checks its shape.
func Parse(b []byte) (*Table, error) {
	var t Table
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: %w", File, err)
	}
	seen := map[string]bool{}
	for _, p := range t.Principals {
		if !validName.MatchString(p.Name) {
			return nil, fmt.Errorf("%s: principal name %q is not a lower-case DNS label", File, p.Name)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("%s: principal %s listed twice", File, p.Name)
		}
		seen[p.Name] = true
		for _, list := range [][]string{p.Write, p.Read, p.Groups} {
			for _, n := range list {
				if n == "" || n == "*" {
					return nil, fmt.Errorf("%s: principal %s: empty or wildcard resource %q", File, p.Name, n)
				}
			}
		}
	}
	if len(t.Principals) == 0 {
		return nil, fmt.Errorf("%s: no principals", File)
	}
	return &t, nil
}

// Principal returns the named principal.
func (t *Table) Principal(name string) (Principal, bool) {
	for _, p := range t.Principals {
		if p.Name == name {
			return p, true
		}
	}
	return Principal{}, false
}

// Names are the principals' names in table order.
func (t *Table) Names() []string {
	var out []string
	for _, p := range t.Principals {
		out = append(out, p.Name)
	}
	return out
}

// Rule is one ALLOW entry, in the terms both Kafka and Strimzi use.
type Rule struct {
	Resource  string // topic, group
	Name      string
	Pattern   string // literal, prefix
	Operation string // Read, Write
}

// Rules are the ALLOW entries p needs, sorted. Describe is implied by
// Read and Write in Kafka's authorizer and in kfake, so it is not listed.
func (p Principal) Rules() []Rule {
	var out []Rule
	for _, t := range p.Write {
		out = append(out, Rule{"topic", t, "literal", "Write"})
	}
	for _, t := range p.Read {
		out = append(out, Rule{"topic", t, "literal", "Read"})
	}
	for _, g := range p.Groups {
		out = append(out, Rule{"group", g, "prefix", "Read"})
	}
	slices.SortFunc(out, func(a, b Rule) int {
		return strings.Compare(a.Resource+"\x00"+a.Name+"\x00"+a.Operation, b.Resource+"\x00"+b.Name+"\x00"+b.Operation)
	})
	return out
}

// ACLs are p's rules as kfake seeds them.
func (p Principal) ACLs() []kfake.ACL {
	var out []kfake.ACL
	for _, r := range p.Rules() {
		a := kfake.ACL{Name: r.Name, Allow: true, Resource: kmsg.ACLResourceTypeTopic,
			Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: kmsg.ACLOperationRead}
		if r.Resource == "group" {
			a.Resource = kmsg.ACLResourceTypeGroup
		}
		if r.Pattern == "prefix" {
			a.Pattern = kmsg.ACLResourcePatternTypePrefixed
		}
		if r.Operation == "Write" {
			a.Operation = kmsg.ACLOperationWrite
		}
		out = append(out, a)
	}
	return out
}

// Kfake are the options that make kfake enforce the table: SASL and ACLs
// on, superuser (who bypasses every ACL: the stack itself and test
// assertions) and one SCRAM-SHA-512 user per principal, with passwords from
// password(principal).
func (t *Table) Kfake(superuser, superPass string, password func(principal string) string) []kfake.Opt {
	opts := []kfake.Opt{kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser(Mechanism, superuser, superPass)}
	for _, p := range t.Principals {
		opts = append(opts, kfake.User(Mechanism, p.Name, password(p.Name), p.ACLs()...))
	}
	return opts
}
