package deploycheck

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/billfn/billfn/cmd/internal/kafkaacl"
)

// Strimzi's KafkaUser v1beta2, the fields billfn uses.
type kafkaUser struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		Authentication struct {
			Type     string `json:"type"`
			Password *struct {
				ValueFrom struct {
					SecretKeyRef keyRef `json:"secretKeyRef"`
				} `json:"valueFrom"`
			} `json:"password,omitempty"`
		} `json:"authentication"`
		Authorization struct {
			Type string `json:"type"`
			ACLs []struct {
				Resource struct {
					Type        string `json:"type"`
					Name        string `json:"name,omitempty"`
					PatternType string `json:"patternType,omitempty"`
				} `json:"resource"`
				Operations []string `json:"operations"`
				Host       string   `json:"host,omitempty"`
				Type       string   `json:"type,omitempty"`
			} `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

// eventing-kafka-broker's KafkaSource spec.net, the SASL part.
type kafkaNet struct {
	SASL struct {
		Enable   bool `json:"enable"`
		User     ref  `json:"user"`
		Password ref  `json:"password"`
		Type     ref  `json:"type"`
	} `json:"sasl"`
}

type ref struct {
	SecretKeyRef keyRef `json:"secretKeyRef"`
}

// The cluster enforces kafka-acls.yaml: one KafkaUser per principal, SCRAM
// with the password from billfn-secrets' kafka-password-<name>, and
// exactly the table's ACLs, all of them ALLOW.
func TestKafkaUsersAreTheACLTable(t *testing.T) {
	tab, err := kafkaacl.Load(filepath.Join(root, kafkaacl.File))
	if err != nil {
		t.Fatal(err)
	}
	users := decodeAll[kafkaUser](t, "knative/infra/kafka-users.yaml", "kafka.strimzi.io/v1beta2", "KafkaUser")
	got := map[string]kafkaUser{}
	for _, u := range users {
		got[u.Metadata.Name] = u
	}
	if names := slices.Sorted(mapKeys(got)); !slices.Equal(names, slices.Sorted(slices.Values(tab.Names()))) {
		t.Errorf("KafkaUsers %v, the table's principals %v", names, slices.Sorted(slices.Values(tab.Names())))
	}
	env := envFile(t, "knative/infra/secrets.env")
	for _, p := range tab.Principals {
		u, ok := got[p.Name]
		if !ok {
			continue
		}
		if u.Metadata.Namespace != "billfn" || u.Metadata.Labels["strimzi.io/cluster"] != "billfn" {
			t.Errorf("KafkaUser %s: namespace %q cluster label %q, want billfn", p.Name, u.Metadata.Namespace, u.Metadata.Labels["strimzi.io/cluster"])
		}
		a := u.Spec.Authentication
		if a.Type != "scram-sha-512" || a.Password == nil ||
			a.Password.ValueFrom.SecretKeyRef != (keyRef{Name: "billfn-secrets", Key: kafkaacl.PasswordSecret(p.Name)}) {
			t.Errorf("KafkaUser %s: authentication %+v, want scram-sha-512 with the password billfn-secrets/%s", p.Name, a, kafkaacl.PasswordSecret(p.Name))
		}
		if _, ok := env[kafkaacl.PasswordSecret(p.Name)]; !ok {
			t.Errorf("knative/infra/secrets.env has no %s", kafkaacl.PasswordSecret(p.Name))
		}
		if u.Spec.Authorization.Type != "simple" {
			t.Errorf("KafkaUser %s: authorization %q, want simple", p.Name, u.Spec.Authorization.Type)
		}
		var have []string
		for _, acl := range u.Spec.Authorization.ACLs {
			if acl.Type != "" && acl.Type != "allow" {
				t.Errorf("KafkaUser %s: a %s ACL; the table only allows", p.Name, acl.Type)
			}
			if acl.Host != "" && acl.Host != "*" {
				t.Errorf("KafkaUser %s: host %q", p.Name, acl.Host)
			}
			pattern := acl.Resource.PatternType
			if pattern == "" {
				pattern = "literal"
			}
			for _, op := range acl.Operations {
				have = append(have, fmt.Sprintf("%s %s %s %s", acl.Resource.Type, acl.Resource.Name, pattern, op))
			}
		}
		var want []string
		for _, r := range p.Rules() {
			want = append(want, fmt.Sprintf("%s %s %s %s", r.Resource, r.Name, r.Pattern, r.Operation))
		}
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			t.Errorf("KafkaUser %s allows\n  %s\nthe table says\n  %s", p.Name, strings.Join(have, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

// The broker refuses anonymous clients and authorizes every request, and
// every client of it logs in: the functions (stack.yml and the Knative
// Services: KAFKA_USERNAME their own name, their own password only), the
// KafkaSources and the KafkaSink (the kafka-trigger principal).
func TestKafkaRequiresAuthenticationEverywhere(t *testing.T) {
	var kafka struct {
		Kind string `json:"kind"`
		Spec struct {
			Kafka struct {
				Listeners []struct {
					Name           string `json:"name"`
					Authentication *struct {
						Type string `json:"type"`
					} `json:"authentication"`
					NetworkPolicyPeers []policyPeer `json:"networkPolicyPeers"`
				} `json:"listeners"`
				Authorization *struct {
					Type string `json:"type"`
				} `json:"authorization"`
			} `json:"kafka"`
			EntityOperator struct {
				UserOperator *struct{} `json:"userOperator"`
			} `json:"entityOperator"`
		} `json:"spec"`
	}
	found := false
	for _, d := range docs(t, "knative/infra/kafka.yaml") {
		var tm typeMeta
		if err := yaml.Unmarshal(d, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.Kind != "Kafka" {
			continue
		}
		found = true
		if err := yaml.Unmarshal(d, &kafka); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatal("knative/infra/kafka.yaml has no Kafka")
	}
	k := kafka.Spec.Kafka
	if len(k.Listeners) == 0 {
		t.Fatal("no listeners")
	}
	var clients []policyPeer
	for _, p := range loadPolicies(t) {
		if p.Metadata.Name == "kafka-from-clients" && len(p.Spec.Ingress) == 1 {
			clients = p.Spec.Ingress[0].From
		}
	}
	if len(clients) == 0 {
		t.Fatal("no kafka-from-clients NetworkPolicy with one ingress rule")
	}
	for _, l := range k.Listeners {
		if l.Authentication == nil || l.Authentication.Type != "scram-sha-512" {
			t.Errorf("listener %s does not require SCRAM-SHA-512 authentication", l.Name)
		}
		// Without peers Strimzi's own policy opens the listener to every pod.
		if !reflect.DeepEqual(l.NetworkPolicyPeers, clients) {
			t.Errorf("listener %s: networkPolicyPeers %+v, want kafka-from-clients' peers %+v", l.Name, l.NetworkPolicyPeers, clients)
		}
	}
	if k.Authorization == nil || k.Authorization.Type != "simple" {
		t.Error("the Kafka cluster has no authorization: ACLs would not apply")
	}
	if kafka.Spec.EntityOperator.UserOperator == nil {
		t.Error("no User Operator: the KafkaUsers would never become users")
	}

	st := clusterStack(t)
	services := decodeAll[knService](t, "knative/services.yaml", "serving.knative.dev/v1", "Service")
	for _, name := range st.Names() {
		f := st.Functions[name]
		if f.Environment["KAFKA_SASL_MECHANISM"] != kafkaacl.Mechanism || f.Environment["KAFKA_USERNAME"] != name {
			t.Errorf("stack.yml %s: KAFKA_SASL_MECHANISM %q KAFKA_USERNAME %q, want %s and its own name", name,
				f.Environment["KAFKA_SASL_MECHANISM"], f.Environment["KAFKA_USERNAME"], kafkaacl.Mechanism)
		}
		var kafkaSecrets []string
		for _, s := range f.Secrets {
			if strings.HasPrefix(s, kafkaacl.PasswordSecret("")) {
				kafkaSecrets = append(kafkaSecrets, s)
			}
		}
		if !slices.Equal(kafkaSecrets, []string{kafkaacl.PasswordSecret(name)}) {
			t.Errorf("stack.yml %s holds Kafka passwords %v, want only its own", name, kafkaSecrets)
		}
	}
	for _, s := range services {
		fn := strings.TrimSuffix(s.Metadata.Name, "-events")
		env := envMap(s.Spec.Template.Spec.Containers[0])
		if env["KAFKA_USERNAME"] != fn {
			t.Errorf("Service %s: KAFKA_USERNAME %q, want %s", s.Metadata.Name, env["KAFKA_USERNAME"], fn)
		}
	}
	sources := decodeAll[kafkaSource](t, "knative/kafka-sources.yaml", "sources.knative.dev/v1beta1", "KafkaSource")
	for _, ks := range sources {
		n := ks.Spec.Net
		if n == nil || !n.SASL.Enable ||
			n.SASL.User.SecretKeyRef != (keyRef{Name: "billfn-kafka-delivery", Key: "user"}) ||
			n.SASL.Password.SecretKeyRef != (keyRef{Name: "billfn-kafka-delivery", Key: "password"}) ||
			n.SASL.Type.SecretKeyRef != (keyRef{Name: "billfn-kafka-delivery", Key: "sasl.mechanism"}) {
			t.Errorf("KafkaSource %s does not log in with billfn-kafka-delivery: %+v", ks.Metadata.Name, n)
		}
		if !strings.HasPrefix(ks.Spec.ConsumerGroup, "knative-") {
			t.Errorf("KafkaSource %s: group %q; the kafka-trigger principal may only use knative-*", ks.Metadata.Name, ks.Spec.ConsumerGroup)
		}
	}
	sinks := decodeAll[kafkaSink](t, "knative/dead-letter-sink.yaml", "eventing.knative.dev/v1alpha1", "KafkaSink")
	for _, s := range sinks {
		if s.Spec.Auth == nil || s.Spec.Auth.Secret.Ref.Name != "billfn-kafka-delivery" {
			t.Errorf("KafkaSink %s does not log in with billfn-kafka-delivery", s.Metadata.Name)
		}
	}
	mk := read(t, "Makefile")
	if !strings.Contains(mk, "secret generic billfn-kafka-delivery") || !strings.Contains(mk, "printf "+kafkaacl.Trigger+" >$$d/user") {
		t.Error("make deploy-secrets does not create billfn-kafka-delivery for the kafka-trigger principal")
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
