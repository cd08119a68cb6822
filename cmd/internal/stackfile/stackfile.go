// Package stackfile reads stack.yml, the OpenFaaS stack file (schema
// version 1.0) that is billfn's single source of truth for its functions:
// image, environment, secrets, labels, limits, and — in annotations — which
// Kafka topics each function subscribes to and when its schedule ticks.
//
// The types mirror faas-cli's stack schema (github.com/openfaas/go-sdk/stack)
// field for field, and Load decodes strictly, so a misspelt key is an error
// here rather than a field faas-cli silently ignores. Substitution of
// ${NAME}, ${NAME:-default} and ${NAME-default} from the environment happens
// before decoding, as faas-cli does it (drone/envsubst).
package stackfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Annotation keys and values shared with the OpenFaaS connectors.
const (
	// AnnotationTopic lists, comma-separated, the Kafka topics a function
	// receives, and CronTopic when it is scheduled (connector-sdk convention).
	AnnotationTopic = "topic"
	// AnnotationSchedule is the cron expression of the function's ticks.
	AnnotationSchedule = "schedule"
	// CronTopic is the pseudo-topic of schedule ticks (cron-connector).
	CronTopic = "cron-function"
	// AnnotationBatch asks the kafka-trigger to deliver up to this many
	// records of one partition as one application/cloudevents-batch+json
	// request.
	AnnotationBatch = "billfn.dev/batch-size"
	// AnnotationBatchWait is how long the kafka-trigger may hold a batch's
	// first record while waiting for more (a Go duration, at most 10s;
	// absent or 0: deliver what is already waiting, never wait). It trades
	// a bounded delay for fewer, larger deliveries when records trickle in.
	AnnotationBatchWait = "billfn.dev/batch-wait"
	// AnnotationTypes lists the CloudEvent types the function wants
	// (comma-separated; "billfn.invoice.*" matches a prefix). The
	// kafka-trigger skips other records of its topics without a request,
	// as a Knative Trigger's type filter would. Absent: every record.
	AnnotationTypes = "billfn.dev/types"
)

// ProviderName is the only provider faas-cli accepts.
const ProviderName = "openfaas"

// Stack is the whole file.
type Stack struct {
	Version       string               `yaml:"version,omitempty"`
	Provider      Provider             `yaml:"provider"`
	Functions     map[string]*Function `yaml:"functions"`
	Configuration *Configuration       `yaml:"configuration,omitempty"`
}

// Provider names the OpenFaaS gateway faas-cli deploys to.
type Provider struct {
	Name    string `yaml:"name"`
	Gateway string `yaml:"gateway"`
}

// Configuration is the stack-wide build configuration.
type Configuration struct {
	Templates []TemplateSource `yaml:"templates,omitempty"`
	Copy      []string         `yaml:"copy,omitempty"`
}

// TemplateSource names a build template.
type TemplateSource struct {
	Name   string `yaml:"name"`
	Source string `yaml:"source,omitempty"`
}

// Resources are memory and CPU quantities (Kubernetes notation).
type Resources struct {
	Memory string `yaml:"memory,omitempty"`
	CPU    string `yaml:"cpu,omitempty"`
}

// Function is one function of the stack.
type Function struct {
	Name string `yaml:"-"`

	Lang                   string            `yaml:"lang"`
	Handler                string            `yaml:"handler"`
	Image                  string            `yaml:"image"`
	FProcess               string            `yaml:"fprocess,omitempty"`
	Environment            map[string]string `yaml:"environment,omitempty"`
	Secrets                []string          `yaml:"secrets,omitempty"`
	SkipBuild              bool              `yaml:"skip_build,omitempty"`
	Constraints            []string          `yaml:"constraints,omitempty"`
	EnvironmentFile        []string          `yaml:"environment_file,omitempty"`
	Labels                 map[string]string `yaml:"labels,omitempty"`
	Limits                 *Resources        `yaml:"limits,omitempty"`
	Requests               *Resources        `yaml:"requests,omitempty"`
	ReadOnlyRootFilesystem bool              `yaml:"readonly_root_filesystem,omitempty"`
	BuildOptions           []string          `yaml:"build_options,omitempty"`
	Annotations            map[string]string `yaml:"annotations,omitempty"`
	Namespace              string            `yaml:"namespace,omitempty"`
	BuildArgs              map[string]string `yaml:"build_args,omitempty"`
	Platforms              string            `yaml:"platforms,omitempty"`
	BuildSecrets           map[string]string `yaml:"build_secrets,omitempty"`
}

// Lookup finds the value of an environment variable (os.LookupEnv).
type Lookup func(name string) (string, bool)

// Load reads, substitutes and strictly decodes the stack file at path.
func Load(path string, lookup Lookup) (*Stack, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(raw, lookup)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse substitutes and strictly decodes stack file contents.
func Parse(raw []byte, lookup Lookup) (*Stack, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	expanded, err := Expand(string(raw), lookup)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	var s Stack
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if s.Provider.Name != ProviderName {
		return nil, fmt.Errorf("provider.name must be %q, not %q", ProviderName, s.Provider.Name)
	}
	if s.Version != "" && s.Version != "1.0" {
		return nil, fmt.Errorf("version must be 1.0, not %q", s.Version)
	}
	if len(s.Functions) == 0 {
		return nil, errors.New("no functions")
	}
	for name, f := range s.Functions {
		if f == nil {
			return nil, fmt.Errorf("function %s is empty", name)
		}
		f.Name = name
		if _, err := f.Subscription(); err != nil {
			return nil, fmt.Errorf("function %s: %w", name, err)
		}
	}
	return &s, nil
}

// Names returns the function names, sorted.
func (s *Stack) Names() []string {
	names := make([]string, 0, len(s.Functions))
	for n := range s.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Dir is the folder a function is built from: build_args.FUNCTION under
// functions/ (the root Dockerfile's convention), relative to the stack file.
func (f *Function) Dir() string {
	return filepath.Join("functions", f.BuildArgs["FUNCTION"])
}

// Subscription is what triggers a function besides HTTP calls.
type Subscription struct {
	Topics    []string      // Kafka topics, in annotation order
	Schedule  string        // cron expression; "" when the function has no schedule
	BatchSize int           // records per delivery; 1 when not batched
	BatchWait time.Duration // longest hold of a batch's first record; 0: never wait
	Types     []string      // CloudEvent types delivered (prefix when ending in ".*"); empty: all
}

// Wants reports whether a record of CloudEvent type typ is delivered.
func (s Subscription) Wants(typ string) bool {
	if len(s.Types) == 0 || typ == "" {
		return true // unfiltered, or a record whose type is unknown: the function decides
	}
	for _, t := range s.Types {
		if t == typ || (strings.HasSuffix(t, ".*") && strings.HasPrefix(typ, t[:len(t)-1])) {
			return true
		}
	}
	return false
}

// Subscription reads the function's annotations.
func (f *Function) Subscription() (Subscription, error) {
	return ParseSubscription(f.Annotations)
}

// ParseSubscription reads the trigger annotations of a function, as found
// in stack.yml or in the gateway's /system/functions.
func ParseSubscription(annotations map[string]string) (Subscription, error) {
	sub := Subscription{BatchSize: 1}
	cron := false
	for _, t := range strings.Split(annotations[AnnotationTopic], ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "":
		case CronTopic:
			cron = true
		default:
			sub.Topics = append(sub.Topics, t)
		}
	}
	schedule := strings.TrimSpace(annotations[AnnotationSchedule])
	switch {
	case cron && schedule == "":
		return sub, fmt.Errorf("annotation %s lists %s but %s is empty", AnnotationTopic, CronTopic, AnnotationSchedule)
	case !cron && schedule != "":
		return sub, fmt.Errorf("annotation %s is set but %s does not list %s", AnnotationSchedule, AnnotationTopic, CronTopic)
	case cron:
		sub.Schedule = schedule
	}
	if b, ok := annotations[AnnotationBatch]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || n < 1 || n > 1000 {
			return sub, fmt.Errorf("annotation %s must be an integer from 1 to 1000, not %q", AnnotationBatch, b)
		}
		sub.BatchSize = n
	}
	if w, ok := annotations[AnnotationBatchWait]; ok {
		d, err := time.ParseDuration(strings.TrimSpace(w))
		if err != nil || d < 0 || d > 10*time.Second {
			return sub, fmt.Errorf("annotation %s must be a duration from 0s to 10s, not %q", AnnotationBatchWait, w)
		}
		if d > 0 && sub.BatchSize == 1 {
			return sub, fmt.Errorf("annotation %s needs %s above 1", AnnotationBatchWait, AnnotationBatch)
		}
		sub.BatchWait = d
	}
	for _, t := range strings.Split(annotations[AnnotationTypes], ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if strings.ContainsAny(t, " \t") || strings.Contains(strings.TrimSuffix(t, ".*"), "*") {
			return sub, fmt.Errorf("annotation %s: %q is not a CloudEvent type or a prefix ending in .*", AnnotationTypes, t)
		}
		sub.Types = append(sub.Types, t)
	}
	return sub, nil
}

// Expand substitutes environment references the way faas-cli does:
// ${NAME}, ${NAME:-default} (default when unset or empty), ${NAME-default}
// (default when unset) and $NAME. Unset names without a default become "".
// Any other use of "$" is an error, so the file stays within the syntax
// both faas-cli and this package understand.
func Expand(s string, lookup Lookup) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ at offset %d", i)
			}
			expr := s[i+2 : i+end]
			name, def, op := expr, "", ""
			if j := strings.Index(expr, ":-"); j >= 0 {
				name, def, op = expr[:j], expr[j+2:], ":-"
			} else if j := strings.IndexByte(expr, '-'); j >= 0 {
				name, def, op = expr[:j], expr[j+1:], "-"
			}
			if !validName(name) {
				return "", fmt.Errorf("unsupported substitution ${%s}", expr)
			}
			v, ok := lookup(name)
			switch {
			case op == ":-" && (!ok || v == ""):
				v = def
			case op == "-" && !ok:
				v = def
			}
			b.WriteString(v)
			i += end
			continue
		}
		j := i + 1
		for j < len(s) && (s[j] == '_' || isAlnum(s[j])) {
			j++
		}
		name := s[i+1 : j]
		if !validName(name) {
			return "", fmt.Errorf("a lone $ at offset %d (faas-cli would substitute it)", i)
		}
		v, _ := lookup(name)
		b.WriteString(v)
		i = j - 1
	}
	return b.String(), nil
}

func validName(n string) bool {
	if n == "" || n[0] >= '0' && n[0] <= '9' {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] != '_' && !isAlnum(n[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
