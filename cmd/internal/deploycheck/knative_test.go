package deploycheck

import (
	"bufio"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/events"
)

// The knative/ manifests are decoded strictly into the structs below. They
// follow the published schemas field for field (Knative Serving's
// serving.knative.dev/v1 Service, eventing-kafka-broker's KafkaSource
// v1beta1 and KafkaSink v1alpha1, Knative Eventing's PingSource v1,
// Strimzi's KafkaTopic v1beta2) for the fields billfn uses, so a misspelt or
// misplaced key fails here instead of in a cluster.

type meta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value,omitempty"`
	ValueFrom *struct {
		SecretKeyRef *keyRef `json:"secretKeyRef,omitempty"`
	} `json:"valueFrom,omitempty"`
}

type keyRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port,omitempty"`
	} `json:"httpGet,omitempty"`
	InitialDelaySeconds int `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int `json:"timeoutSeconds,omitempty"`
	FailureThreshold    int `json:"failureThreshold,omitempty"`
}

type quantities struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

type container struct {
	Name  string `json:"name,omitempty"`
	Image string `json:"image"`
	Ports []struct {
		Name          string `json:"name,omitempty"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol,omitempty"`
	} `json:"ports,omitempty"`
	Env            []envVar `json:"env,omitempty"`
	ReadinessProbe *probe   `json:"readinessProbe,omitempty"`
	LivenessProbe  *probe   `json:"livenessProbe,omitempty"`
	Resources      struct {
		Requests quantities `json:"requests,omitempty"`
		Limits   quantities `json:"limits,omitempty"`
	} `json:"resources"`
	SecurityContext *struct {
		RunAsNonRoot             *bool `json:"runAsNonRoot,omitempty"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem,omitempty"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation,omitempty"`
		Capabilities             *struct {
			Drop []string `json:"drop,omitempty"`
		} `json:"capabilities,omitempty"`
		SeccompProfile *struct {
			Type string `json:"type"`
		} `json:"seccompProfile,omitempty"`
	} `json:"securityContext,omitempty"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly,omitempty"`
	} `json:"volumeMounts,omitempty"`
}

type knService struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		Template struct {
			Metadata struct {
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"metadata"`
			Spec struct {
				ContainerConcurrency *int64      `json:"containerConcurrency,omitempty"`
				TimeoutSeconds       *int64      `json:"timeoutSeconds,omitempty"`
				Containers           []container `json:"containers"`
				Volumes              []struct {
					Name   string `json:"name"`
					Secret *struct {
						SecretName string `json:"secretName"`
						Items      []struct {
							Key  string `json:"key"`
							Path string `json:"path"`
						} `json:"items,omitempty"`
					} `json:"secret,omitempty"`
				} `json:"volumes,omitempty"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type destination struct {
	Ref *struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Name       string `json:"name"`
		Namespace  string `json:"namespace,omitempty"`
	} `json:"ref,omitempty"`
	URI string `json:"uri,omitempty"`
}

type kafkaSource struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		ConsumerGroup    string   `json:"consumerGroup"`
		Consumers        *int32   `json:"consumers,omitempty"`
		BootstrapServers []string `json:"bootstrapServers"`
		Topics           []string `json:"topics"`
		InitialOffset    string   `json:"initialOffset,omitempty"`
		Ordering         string   `json:"ordering,omitempty"`
		Delivery         *struct {
			Retry          *int32       `json:"retry,omitempty"`
			BackoffPolicy  string       `json:"backoffPolicy,omitempty"`
			BackoffDelay   string       `json:"backoffDelay,omitempty"`
			DeadLetterSink *destination `json:"deadLetterSink,omitempty"`
			Timeout        string       `json:"timeout,omitempty"`
		} `json:"delivery,omitempty"`
		Net         *kafkaNet   `json:"net,omitempty"`
		Sink        destination `json:"sink"`
		CEOverrides *struct {
			Extensions map[string]string `json:"extensions,omitempty"`
		} `json:"ceOverrides,omitempty"`
	} `json:"spec"`
}

type pingSource struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		Schedule    string      `json:"schedule"`
		Timezone    string      `json:"timezone,omitempty"`
		ContentType string      `json:"contentType,omitempty"`
		Data        string      `json:"data,omitempty"`
		DataBase64  string      `json:"dataBase64,omitempty"`
		Sink        destination `json:"sink"`
	} `json:"spec"`
}

type kafkaSink struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		Topic             string   `json:"topic"`
		NumPartitions     *int32   `json:"numPartitions,omitempty"`
		ReplicationFactor *int16   `json:"replicationFactor,omitempty"`
		BootstrapServers  []string `json:"bootstrapServers"`
		ContentMode       string   `json:"contentMode,omitempty"`
		Auth              *struct {
			Secret struct {
				Ref struct {
					Name string `json:"name"`
				} `json:"ref"`
			} `json:"secret"`
		} `json:"auth,omitempty"`
	} `json:"spec"`
}

type kafkaTopic struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		TopicName  string         `json:"topicName,omitempty"`
		Partitions int32          `json:"partitions"`
		Replicas   int32          `json:"replicas"`
		Config     map[string]any `json:"config,omitempty"`
	} `json:"spec"`
}

type kustomization struct {
	typeMeta
	Resources       []string `json:"resources,omitempty"`
	SecretGenerator []struct {
		Name      string   `json:"name"`
		Namespace string   `json:"namespace,omitempty"`
		Envs      []string `json:"envs,omitempty"`
		Options   *struct {
			DisableNameSuffixHash bool `json:"disableNameSuffixHash,omitempty"`
		} `json:"options,omitempty"`
	} `json:"secretGenerator,omitempty"`
}

// docs splits a multi-document YAML file.
func docs(t *testing.T, path string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(read(t, path), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// decodeAll decodes every document of path strictly into T, checking kind.
func decodeAll[T any](t *testing.T, path, apiVersion, kind string) []T {
	t.Helper()
	var out []T
	for i, d := range docs(t, path) {
		var tm typeMeta
		if err := yaml.Unmarshal(d, &tm); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		if tm.APIVersion != apiVersion || tm.Kind != kind {
			t.Fatalf("%s document %d is %s %s, want %s %s", path, i, tm.APIVersion, tm.Kind, apiVersion, kind)
		}
		var v T
		if err := yaml.UnmarshalStrict(d, &v); err != nil {
			t.Fatalf("%s document %d does not decode strictly as %s: %v", path, i, kind, err)
		}
		out = append(out, v)
	}
	return out
}

// clusterStack is stack.yml with the in-cluster defaults.
func clusterStack(t *testing.T) *stackfile.Stack {
	t.Helper()
	st, err := stackfile.Load(filepath.Join(root, "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func envMap(c container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

const (
	visibility   = "networking.knative.dev/visibility"
	trustedEnv   = "EVENTS_TRUST_UNSIGNED"
	secretsMount = "/var/openfaas/secrets"
	bootstrap    = "billfn-kafka-bootstrap.billfn.svc.cluster.local:9092"
)

func TestKnativeServicesMirrorStackYML(t *testing.T) {
	st := clusterStack(t)
	services := decodeAll[knService](t, "knative/services.yaml", "serving.knative.dev/v1", "Service")
	byName := map[string]knService{}
	for _, s := range services {
		if _, dup := byName[s.Metadata.Name]; dup {
			t.Errorf("Service %s twice", s.Metadata.Name)
		}
		byName[s.Metadata.Name] = s
	}
	var want []string
	for _, name := range st.Names() {
		want = append(want, name, name+"-events")
	}
	sort.Strings(want)
	got := slices.Sorted(func(yield func(string) bool) {
		for n := range byName {
			if !yield(n) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Fatalf("Knative Services %v, want a public and an -events Service per stack.yml function: %v", got, want)
	}
	for _, name := range st.Names() {
		f := st.Functions[name]
		for _, events := range []bool{false, true} {
			sname := name
			if events {
				sname += "-events"
			}
			s := byName[sname]
			if s.Metadata.Namespace != "billfn" {
				t.Errorf("%s: namespace %q", sname, s.Metadata.Namespace)
			}
			spec := s.Spec.Template.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("%s: %d containers", sname, len(spec.Containers))
			}
			c := spec.Containers[0]
			if c.Image != f.Image {
				t.Errorf("%s: image %q, stack.yml builds %q", sname, c.Image, f.Image)
			}
			if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 {
				t.Errorf("%s: the function listens on $PORT, which Knative sets from containerPort 8080", sname)
			}
			env := envMap(c)
			if _, ok := env["PORT"]; ok {
				t.Errorf("%s sets PORT, which Knative reserves", sname)
			}
			wantEnv := map[string]string{}
			for k, v := range f.Environment {
				wantEnv[k] = v
			}
			if _, ok := wantEnv["SANDBOX_WEBHOOK_URL"]; ok {
				// Knative routes by Service, not through the OpenFaaS gateway.
				wantEnv["SANDBOX_WEBHOOK_URL"] = "http://handle-webhook.billfn.svc.cluster.local/sandbox"
			}
			for k, fn := range map[string]string{"LEDGER_URL": "process-transaction", "INVOICES_URL": "generate-invoice"} {
				if _, ok := wantEnv[k]; ok {
					wantEnv[k] = "http://" + fn + ".billfn.svc.cluster.local"
				}
			}
			if events {
				wantEnv[trustedEnv] = "true"
			}
			for k, v := range wantEnv {
				if env[k] != v {
					t.Errorf("%s: %s = %q, want %q (stack.yml)", sname, k, env[k], v)
				}
			}
			for k := range env {
				if _, ok := wantEnv[k]; !ok {
					t.Errorf("%s: %s is not in stack.yml's environment", sname, k)
				}
			}
			// Security: only a cluster-local Service may trust unsigned events.
			local := s.Metadata.Labels[visibility] == "cluster-local"
			if events != local {
				t.Errorf("%s: cluster-local = %v, want %v", sname, local, events)
			}
			if env[trustedEnv] == "true" && !local {
				t.Errorf("%s trusts unsigned events on a public route: anyone could forge one", sname)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/_/ready" ||
				c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/_/health" {
				t.Errorf("%s: probes must be /_/ready (readiness) and /_/health (liveness)", sname)
			}
			if c.Resources.Limits != (quantities{CPU: f.Limits.CPU, Memory: f.Limits.Memory}) ||
				c.Resources.Requests != (quantities{CPU: f.Requests.CPU, Memory: f.Requests.Memory}) {
				t.Errorf("%s: resources %+v differ from stack.yml's limits %+v / requests %+v", sname, c.Resources, *f.Limits, *f.Requests)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s: needs readOnlyRootFilesystem and runAsNonRoot (stack.yml: readonly_root_filesystem)", sname)
			}
			// Secrets: the stack.yml names, as files where OpenFaaS puts them.
			if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != secretsMount || !c.VolumeMounts[0].ReadOnly {
				t.Errorf("%s: mounts %+v, want the secrets read-only at %s", sname, c.VolumeMounts, secretsMount)
			}
			var items []string
			for _, v := range spec.Volumes {
				if v.Secret != nil && v.Secret.SecretName == "billfn-secrets" {
					for _, it := range v.Secret.Items {
						if it.Key != it.Path {
							t.Errorf("%s: secret key %s mounted as %s", sname, it.Key, it.Path)
						}
						items = append(items, it.Key)
					}
				}
			}
			if !slices.Equal(slices.Sorted(slices.Values(items)), slices.Sorted(slices.Values(f.Secrets))) {
				t.Errorf("%s mounts secrets %v, stack.yml declares %v", sname, items, f.Secrets)
			}
			ann := s.Spec.Template.Metadata.Annotations
			for _, k := range []string{"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale", "autoscaling.knative.dev/target", "autoscaling.knative.dev/metric"} {
				if ann[k] == "" {
					t.Errorf("%s: no %s annotation", sname, k)
				}
			}
			if events && ann["autoscaling.knative.dev/min-scale"] != "0" {
				t.Errorf("%s: an event sink scales to zero between deliveries", sname)
			}
			if ann["autoscaling.knative.dev/max-scale"] != f.Labels["com.openfaas.scale.max"] {
				t.Errorf("%s: max-scale %s, stack.yml's com.openfaas.scale.max %s", sname, ann["autoscaling.knative.dev/max-scale"], f.Labels["com.openfaas.scale.max"])
			}
			if spec.ContainerConcurrency == nil || *spec.ContainerConcurrency <= 0 {
				t.Errorf("%s: containerConcurrency must be set", sname)
			}
		}
	}
}

func sinkIs(d destination, apiVersion, kind, name string) bool {
	return d.Ref != nil && d.Ref.APIVersion == apiVersion && d.Ref.Kind == kind && d.Ref.Name == name && d.URI == ""
}

func TestKafkaSourcesAreStackYMLSubscriptions(t *testing.T) {
	st := clusterStack(t)
	sources := decodeAll[kafkaSource](t, "knative/kafka-sources.yaml", "sources.knative.dev/v1beta1", "KafkaSource")
	sinks := decodeAll[kafkaSink](t, "knative/dead-letter-sink.yaml", "eventing.knative.dev/v1alpha1", "KafkaSink")
	if len(sinks) != 1 || sinks[0].Metadata.Name != "billfn-dlq" || sinks[0].Spec.Topic != "billfn-dlq" ||
		!slices.Equal(sinks[0].Spec.BootstrapServers, []string{bootstrap}) {
		t.Fatalf("dead-letter sink %+v", sinks)
	}
	seen := map[string]bool{}
	groups := map[string]bool{}
	for _, ks := range sources {
		name := ks.Metadata.Name
		f, ok := st.Functions[name]
		if !ok {
			t.Errorf("KafkaSource %s has no stack.yml function", name)
			continue
		}
		seen[name] = true
		sub, _ := f.Subscription()
		if !slices.Equal(ks.Spec.Topics, sub.Topics) {
			t.Errorf("KafkaSource %s reads %v, stack.yml subscribes %v", name, ks.Spec.Topics, sub.Topics)
		}
		for _, topic := range ks.Spec.Topics {
			if _, ok := events.Topics[topic]; !ok {
				t.Errorf("KafkaSource %s: unknown topic %s", name, topic)
			}
		}
		if !slices.Equal(ks.Spec.BootstrapServers, []string{f.Environment["KAFKA_BROKERS"]}) {
			t.Errorf("KafkaSource %s: bootstrap %v, the function's KAFKA_BROKERS is %s", name, ks.Spec.BootstrapServers, f.Environment["KAFKA_BROKERS"])
		}
		if ks.Spec.ConsumerGroup == "" || groups[ks.Spec.ConsumerGroup] || strings.HasPrefix(ks.Spec.ConsumerGroup, "kafka-trigger-") {
			t.Errorf("KafkaSource %s: consumer group %q must be its own (not the kafka-trigger's)", name, ks.Spec.ConsumerGroup)
		}
		groups[ks.Spec.ConsumerGroup] = true
		if ks.Spec.InitialOffset != "earliest" || ks.Spec.Ordering != "ordered" {
			t.Errorf("KafkaSource %s: initialOffset %q ordering %q, want earliest and ordered", name, ks.Spec.InitialOffset, ks.Spec.Ordering)
		}
		d := ks.Spec.Delivery
		if d == nil || d.Retry == nil || *d.Retry < 1 || d.BackoffPolicy != "exponential" || d.BackoffDelay == "" ||
			d.DeadLetterSink == nil || !sinkIs(*d.DeadLetterSink, "eventing.knative.dev/v1alpha1", "KafkaSink", "billfn-dlq") {
			t.Errorf("KafkaSource %s: delivery %+v needs retries, exponential backoff and the billfn-dlq sink", name, d)
		}
		if !sinkIs(ks.Spec.Sink, "serving.knative.dev/v1", "Service", name+"-events") {
			t.Errorf("KafkaSource %s must deliver to the cluster-local %s-events Service (it cannot sign)", name, name)
		}
	}
	for _, name := range st.Names() {
		sub, _ := st.Functions[name].Subscription()
		if len(sub.Topics) > 0 && !seen[name] {
			t.Errorf("%s subscribes to %v but has no KafkaSource", name, sub.Topics)
		}
	}
}

func TestPingSourcesAreStackYMLSchedules(t *testing.T) {
	st := clusterStack(t)
	pings := decodeAll[pingSource](t, "knative/ping-sources.yaml", "sources.knative.dev/v1", "PingSource")
	seen := map[string]bool{}
	for _, p := range pings {
		name, ok := strings.CutSuffix(p.Metadata.Name, "-tick")
		f := st.Functions[name]
		if !ok || f == nil {
			t.Errorf("PingSource %s is not <function>-tick", p.Metadata.Name)
			continue
		}
		seen[name] = true
		sub, _ := f.Subscription()
		if p.Spec.Schedule != sub.Schedule {
			t.Errorf("PingSource %s: schedule %q, stack.yml %q", p.Metadata.Name, p.Spec.Schedule, sub.Schedule)
		}
		if !sinkIs(p.Spec.Sink, "serving.knative.dev/v1", "Service", name+"-events") {
			t.Errorf("PingSource %s must tick the cluster-local %s-events Service", p.Metadata.Name, name)
		}
	}
	for _, name := range st.Names() {
		if sub, _ := st.Functions[name].Subscription(); sub.Schedule != "" && !seen[name] {
			t.Errorf("%s has a schedule but no PingSource", name)
		}
	}
}

func TestStrimziTopicsHaveTheArchitecturesPartitions(t *testing.T) {
	topics := decodeAll[kafkaTopic](t, "knative/infra/topics.yaml", "kafka.strimzi.io/v1beta2", "KafkaTopic")
	got := map[string]int32{}
	for _, tp := range topics {
		got[tp.Metadata.Name] = tp.Spec.Partitions
		if tp.Metadata.Labels["strimzi.io/cluster"] != "billfn" {
			t.Errorf("KafkaTopic %s is not bound to the billfn cluster", tp.Metadata.Name)
		}
	}
	for topic, parts := range events.Topics {
		if got[topic] != parts {
			t.Errorf("KafkaTopic %s: %d partitions, shared/events says %d", topic, got[topic], parts)
		}
	}
	if got["billfn-dlq"] == 0 {
		t.Error("no billfn-dlq topic for the dead letters")
	}
	if len(got) != len(events.Topics)+1 {
		t.Errorf("topics %v", got)
	}
	// The same dead-letter topic everywhere.
	for _, src := range []struct{ file, text string }{
		{"cmd/kafka-trigger/main.go", `envconfig:"DLQ_TOPIC" default:"billfn-dlq"`},
		{"cmd/stack/run.go", `const DLQTopic = "billfn-dlq"`},
	} {
		if !strings.Contains(read(t, src.file), src.text) {
			t.Errorf("%s no longer uses billfn-dlq", src.file)
		}
	}
}

// envFile reads a kustomize env file.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not name=value", path, line)
		}
		out[k] = v
	}
	return out
}

func TestSecretsTemplateHoldsEverySecretStackYMLDeclares(t *testing.T) {
	st := clusterStack(t)
	env := envFile(t, "knative/infra/secrets.env")
	for _, name := range st.Names() {
		for _, sec := range st.Functions[name].Secrets {
			if env[sec] == "" {
				t.Errorf("%s declares secret %s, knative/infra/secrets.env has no entry for it", name, sec)
			}
		}
	}
	// The functions verify tokens with a public key: the cluster gets
	// jwt-public-key, never the private key nor an HS256 secret.
	if env["jwt-public-key"] == "" {
		t.Error("knative/infra/secrets.env has no jwt-public-key")
	}
	for _, never := range []string{"jwt-private-key", "jwt-secret"} {
		if _, ok := env[never]; ok {
			t.Errorf("knative/infra/secrets.env lists %s: the cluster must hold only the public key", never)
		}
	}
	if !strings.Contains(env["database-url"], ":<postgres-password>@postgres.billfn.svc.cluster.local:5432/") {
		t.Error("database-url does not use postgres-password and the postgres Service")
	}
	if !strings.HasPrefix(env["redis-url"], "redis://redis.billfn.svc.cluster.local:6379/") {
		t.Errorf("redis-url %q is not the redis Service", env["redis-url"])
	}
}

// The committed template holds no usable value: every secret is a
// placeholder (<...>) that make deploy-secrets generates, or a text whose
// credential is one (the database URL's password). Only values that are no
// credential at all (the password-less in-cluster Redis URL) are literal.
func TestSecretsTemplateHoldsOnlyPlaceholders(t *testing.T) {
	noCredential := map[string]bool{"redis-url": true}
	whole := regexp.MustCompile(`^<[^<>]+>$`)
	for name, v := range envFile(t, "knative/infra/secrets.env") {
		switch {
		case whole.MatchString(v):
		case noCredential[name]:
			if strings.Contains(v, "@") {
				t.Errorf("%s = %q carries credentials", name, v)
			}
		case name == "database-url":
			u, err := url.Parse(strings.ReplaceAll(v, "<postgres-password>", "PLACEHOLDER"))
			if err != nil {
				t.Errorf("database-url: %v", err)
				continue
			}
			if p, _ := u.User.Password(); p != "PLACEHOLDER" {
				t.Errorf("database-url's password is %q, not the <postgres-password> placeholder", p)
			}
		default:
			t.Errorf("%s = %q is not a <placeholder>: the template must hold no usable value", name, v)
		}
		for _, leak := range []string{"-----BEGIN", "eyJ", "change-me", "sk_live_", "billfn-kind-"} {
			if strings.Contains(v, leak) {
				t.Errorf("%s holds %q: a real value in the committed template", name, leak)
			}
		}
	}
	// No kustomization turns the template into a Secret: the deploy
	// targets apply bin/deploy/secrets instead, and refuse placeholders.
	for _, dir := range []string{"knative", "knative/infra", "knative/openfaas"} {
		if strings.Contains(read(t, dir+"/kustomization.yaml"), "secretGenerator") {
			t.Errorf("%s/kustomization.yaml generates a Secret: it would apply the template's placeholders", dir)
		}
	}
	mk := read(t, "Makefile")
	for _, want := range []string{"deploy-secrets", "bin/deploy/secrets", "-cluster-secrets", "placeholder"} {
		if !strings.Contains(mk, want) {
			t.Errorf("the Makefile has no %q: make deploy-* must generate the secrets and refuse placeholders", want)
		}
	}
	if strings.Contains(mk, "--from-literal") || strings.Contains(mk, "--from-env-file=$(SECRETS_TEMPLATE)") {
		t.Error("the Makefile applies the template itself")
	}
}

func TestKustomizationsListEveryManifest(t *testing.T) {
	for _, dir := range []string{"knative", "knative/infra", "knative/openfaas"} {
		var k kustomization
		if err := yaml.UnmarshalStrict([]byte(read(t, dir+"/kustomization.yaml")), &k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", dir, err)
		}
		if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
			t.Errorf("%s: %s %s", dir, k.APIVersion, k.Kind)
		}
		listed := map[string]bool{}
		for _, r := range k.Resources {
			listed[r] = true
			if _, err := os.Stat(filepath.Join(root, dir, r)); err != nil {
				t.Errorf("%s lists %s: %v", dir, r, err)
			}
		}
		for _, g := range k.SecretGenerator {
			for _, e := range g.Envs {
				listed[e] = true
			}
		}
		entries, _ := os.ReadDir(filepath.Join(root, dir))
		for _, e := range entries {
			n := e.Name()
			if n == "kustomization.yaml" {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, dir, n, "kustomization.yaml")); err == nil && !listed[n] {
				continue // a kustomization of its own (knative/openfaas), checked in this loop too
			}
			if dir == "knative/infra" && n == "secrets.env" {
				continue // the secrets template, read by make deploy-secrets, never applied
			}
			if dir == "knative/infra" && n == "kafka-acls.yaml" {
				continue // the ACL table the KafkaUsers are checked against (kafka_users_test.go), not a resource
			}
			if !listed[n] {
				t.Errorf("%s/%s is not in its kustomization, so kubectl apply -k skips it", dir, n)
			}
		}
	}
}

type deployment struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		Replicas *int32 `json:"replicas,omitempty"`
		Strategy *struct {
			Type string `json:"type"`
		} `json:"strategy,omitempty"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"metadata"`
			Spec struct {
				Containers []container `json:"containers"`
				Volumes    []struct {
					Name      string `json:"name"`
					Projected *struct {
						Sources []struct {
							Secret *struct {
								Name  string `json:"name"`
								Items []struct {
									Key  string `json:"key"`
									Path string `json:"path"`
								} `json:"items,omitempty"`
							} `json:"secret,omitempty"`
						} `json:"sources"`
					} `json:"projected,omitempty"`
				} `json:"volumes,omitempty"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

func TestKafkaTriggerDeploymentFitsOpenFaaS(t *testing.T) {
	st := clusterStack(t)
	ds := decodeAll[deployment](t, "knative/openfaas/kafka-trigger.yaml", "apps/v1", "Deployment")
	if len(ds) != 1 {
		t.Fatalf("%d Deployments", len(ds))
	}
	d := ds[0]
	if d.Metadata.Namespace != "openfaas" || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("kafka-trigger: namespace %q replicas %v (one replica: every replica would tick)", d.Metadata.Namespace, d.Spec.Replicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	env := envMap(c)
	if env["KAFKA_BROKERS"] != st.Functions["process-transaction"].Environment["KAFKA_BROKERS"] {
		t.Errorf("kafka-trigger KAFKA_BROKERS %q differs from the functions'", env["KAFKA_BROKERS"])
	}
	gw := strings.TrimSuffix(st.Functions["capture-payment"].Environment["SANDBOX_WEBHOOK_URL"], "/function/handle-webhook/sandbox")
	if env["GATEWAY_URL"] != gw {
		t.Errorf("kafka-trigger GATEWAY_URL %q, the functions' gateway is %q", env["GATEWAY_URL"], gw)
	}
	if env["SECRETS_DIR"] != secretsMount || c.VolumeMounts[0].MountPath != secretsMount {
		t.Error("the kafka-trigger reads its secrets from " + secretsMount)
	}
	var files []string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				for _, it := range s.Secret.Items {
					files = append(files, it.Path)
				}
			}
		}
	}
	slices.Sort(files)
	if !slices.Equal(files, []string{"basic-auth-password", "basic-auth-user", "event-signing-key", "kafka-password-kafka-trigger"}) {
		t.Errorf("kafka-trigger secret files %v", files)
	}
	if c.Image != "localhost:5001/billfn-kafka-trigger:latest" {
		t.Errorf("kafka-trigger image %q (make images builds localhost:5001/billfn-kafka-trigger)", c.Image)
	}
}
