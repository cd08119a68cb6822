package deploycheck

import (
	"slices"
	"testing"
)

// networking.k8s.io/v1 NetworkPolicy, the fields billfn uses, decoded
// strictly like the other manifests.
type labelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels,omitempty"`
	MatchExpressions []struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values,omitempty"`
	} `json:"matchExpressions,omitempty"`
}

type policyPeer struct {
	PodSelector       *labelSelector `json:"podSelector,omitempty"`
	NamespaceSelector *labelSelector `json:"namespaceSelector,omitempty"`
	IPBlock           *struct {
		CIDR   string   `json:"cidr"`
		Except []string `json:"except,omitempty"`
	} `json:"ipBlock,omitempty"`
}

type policyPort struct {
	Protocol string `json:"protocol,omitempty"`
	Port     int    `json:"port,omitempty"`
}

type policyRule struct {
	From  []policyPeer `json:"from,omitempty"`
	To    []policyPeer `json:"to,omitempty"`
	Ports []policyPort `json:"ports,omitempty"`
}

type networkPolicy struct {
	typeMeta
	Metadata meta `json:"metadata"`
	Spec     struct {
		PodSelector labelSelector `json:"podSelector"`
		PolicyTypes []string      `json:"policyTypes"`
		Ingress     []policyRule  `json:"ingress,omitempty"`
		Egress      []policyRule  `json:"egress,omitempty"`
	} `json:"spec"`
}

// matches reports whether sel selects labels (Kubernetes semantics: an
// empty selector selects everything).
func (sel labelSelector) matches(labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range sel.MatchExpressions {
		v, ok := labels[e.Key]
		switch e.Operator {
		case "In":
			if !ok || !slices.Contains(e.Values, v) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(e.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// pod is a pod as a policy sees it: its namespace's labels and its own.
type pod struct {
	name      string
	namespace map[string]string
	labels    map[string]string
}

func ns(name string) map[string]string { return map[string]string{"kubernetes.io/metadata.name": name} }

func (p pod) ns() string { return p.namespace["kubernetes.io/metadata.name"] }

// allows reports whether peer admits p, for a policy in namespace policyNS.
func (peer policyPeer) allows(p pod, policyNS string) bool {
	if peer.IPBlock != nil {
		return false // pods are addressed by selectors here; an ipBlock is checked on its own
	}
	if peer.NamespaceSelector == nil && p.ns() != policyNS {
		return false // a podSelector alone means the policy's namespace
	}
	if peer.NamespaceSelector != nil && !peer.NamespaceSelector.matches(p.namespace) {
		return false
	}
	return peer.PodSelector == nil || peer.PodSelector.matches(p.labels)
}

func loadPolicies(t *testing.T) []networkPolicy {
	t.Helper()
	var out []networkPolicy
	for f, namespace := range map[string]string{"knative/infra/network-policies.yaml": "billfn", "knative/network-policies.yaml": "billfn", "knative/openfaas/network-policies.yaml": "openfaas-fn"} {
		for _, p := range decodeAll[networkPolicy](t, f, "networking.k8s.io/v1", "NetworkPolicy") {
			if p.Metadata.Namespace != namespace {
				t.Errorf("%s: %s is in namespace %q, not %s", f, p.Metadata.Name, p.Metadata.Namespace, namespace)
			}
			out = append(out, p)
		}
	}
	return out
}

// reach reports whether from may open a connection to port of to: allowed
// by to's ingress policies (or to selected by none) and by from's egress
// policies (or from selected by none), each policy selecting the pods of its
// own namespace.
func reach(pols []networkPolicy, from, to pod, port int) bool {
	ok := func(kind string, subject, other pod) bool {
		selected, allowed := false, false
		for _, p := range pols {
			if p.Metadata.Namespace != subject.ns() || !slices.Contains(p.Spec.PolicyTypes, kind) || !p.Spec.PodSelector.matches(subject.labels) {
				continue
			}
			selected = true
			rules := p.Spec.Ingress
			if kind == "Egress" {
				rules = p.Spec.Egress
			}
			for _, r := range rules {
				peers := r.From
				if kind == "Egress" {
					peers = r.To
				}
				portOK := len(r.Ports) == 0
				for _, pp := range r.Ports {
					portOK = portOK || pp.Port == port
				}
				peerOK := len(peers) == 0
				for _, peer := range peers {
					peerOK = peerOK || peer.allows(other, p.Metadata.Namespace)
				}
				allowed = allowed || portOK && peerOK
			}
		}
		return !selected || allowed
	}
	if !ok("Ingress", to, from) {
		return false
	}
	return ok("Egress", from, to)
}

// TestNetworkPoliciesIsolateTheEventEndpointsAndTheInfrastructure: in the
// billfn namespace nothing is reachable unless a policy says so; the
// cluster-local <name>-events pods, which trust unsigned deliveries, are
// reached only through Knative's data plane (the path of the KafkaSource
// and PingSource dispatchers), never directly by another pod; the functions
// reach PostgreSQL, Redis and Kafka, and PostgreSQL and Redis accept
// nobody else.
func TestNetworkPoliciesIsolateTheEventEndpointsAndTheInfrastructure(t *testing.T) {
	pols := loadPolicies(t)
	st := clusterStack(t)
	billfn := ns("billfn")

	if !deniesAllIngress(pols, "billfn") {
		t.Fatal("no default-deny ingress policy selects every pod of billfn")
	}

	fnPod := func(svc, name string) pod {
		return pod{svc, billfn, map[string]string{"app.kubernetes.io/part-of": "billfn", "app.kubernetes.io/name": name,
			"serving.knative.dev/service": svc, "serving.knative.dev/revision": svc + "-00001"}}
	}
	infra := func(name string) pod {
		return pod{name, billfn, map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "billfn"}}
	}
	postgres, redis := infra("postgres"), infra("redis")
	kafka := pod{"kafka", billfn, map[string]string{"strimzi.io/cluster": "billfn", "strimzi.io/kind": "Kafka", "strimzi.io/name": "billfn-kafka"}}
	activator := pod{"activator", ns("knative-serving"), map[string]string{"app": "activator"}}
	kourier := pod{"3scale-kourier-gateway", ns("kourier-system"), map[string]string{"app": "3scale-kourier-gateway"}}
	dispatcher := pod{"kafka-source-dispatcher", ns("knative-eventing"), map[string]string{"app": "kafka-source-dispatcher"}}
	intruders := []pod{
		{"a pod in default", ns("default"), map[string]string{"app": "x"}},
		{"an OpenFaaS function", ns("openfaas-fn"), map[string]string{"faas_function": "x"}},
		{"the kafka-trigger", ns("openfaas"), map[string]string{"app.kubernetes.io/name": "kafka-trigger", "app.kubernetes.io/part-of": "billfn"}},
		infra("stripe-mock"), postgres, redis, kafka, dispatcher,
	}

	for _, name := range st.Names() {
		public, events := fnPod(name, name), fnPod(name+"-events", name)
		for _, target := range []pod{public, events} {
			if !reach(pols, kourier, target, 8012) || !reach(pols, activator, target, 8012) {
				t.Errorf("%s: Knative's data plane (kourier, activator) cannot reach it on queue-proxy's 8012", target.name)
			}
			for _, from := range append(intruders, fnPod("generate-invoice", "generate-invoice"), fnPod("process-transaction-events", "process-transaction")) {
				for _, port := range []int{8012, 8013, 8080} {
					if from.name != target.name && reach(pols, from, target, port) {
						t.Errorf("%s reaches %s directly on %d", from.name, target.name, port)
					}
				}
			}
		}
		for _, fn := range []pod{public, events} {
			for _, dep := range []struct {
				p    pod
				port int
			}{{postgres, 5432}, {redis, 6379}, {kafka, 9092}} {
				if !reach(pols, fn, dep.p, dep.port) {
					t.Errorf("%s cannot reach %s:%d", fn.name, dep.p.name, dep.port)
				}
			}
			if reach(pols, fn, postgres, 6379) || reach(pols, fn, redis, 5432) {
				t.Errorf("%s reaches a database on a port it does not serve", fn.name)
			}
			if reach(pols, fn, pod{"kube-apiserver", ns("default"), map[string]string{"component": "apiserver"}}, 443) {
				t.Errorf("%s reaches pods outside its dependencies", fn.name)
			}
		}
	}
	for _, target := range []struct {
		p    pod
		port int
	}{{postgres, 5432}, {redis, 6379}, {kafka, 9092}} {
		for _, from := range intruders {
			if from.name == "an OpenFaaS function" || from.name == target.p.name {
				continue // the OpenFaaS path's functions use the same databases
			}
			if target.p.name == "kafka" && (from.name == "the kafka-trigger" || from.name == dispatcher.name) {
				continue // Kafka's own clients
			}
			if reach(pols, from, target.p, target.port) {
				t.Errorf("%s reaches %s", from.name, target.p.name)
			}
		}
	}
	if !reach(pols, infra("billfn-migrate"), postgres, 5432) {
		t.Error("the migration Job cannot reach PostgreSQL")
	}
	if reach(pols, infra("billfn-migrate"), redis, 6379) {
		t.Error("the migration Job reaches Redis")
	}
}

// deniesAllIngress reports whether a policy of namespace selects every pod
// and admits nothing.
func deniesAllIngress(pols []networkPolicy, namespace string) bool {
	for _, p := range pols {
		if p.Metadata.Namespace == namespace && len(p.Spec.PodSelector.MatchLabels) == 0 && len(p.Spec.PodSelector.MatchExpressions) == 0 &&
			slices.Contains(p.Spec.PolicyTypes, "Ingress") && len(p.Spec.Ingress) == 0 {
			return true
		}
	}
	return false
}

// internet reports whether from may open a connection to a public address
// (8.8.8.8) on port: no egress policy selects it, or one allows an ipBlock
// holding that address on that port.
func internet(pols []networkPolicy, from pod, port int) bool {
	selected := false
	for _, p := range pols {
		if p.Metadata.Namespace != from.ns() || !slices.Contains(p.Spec.PolicyTypes, "Egress") || !p.Spec.PodSelector.matches(from.labels) {
			continue
		}
		selected = true
		for _, r := range p.Spec.Egress {
			portOK := len(r.Ports) == 0
			for _, pp := range r.Ports {
				portOK = portOK || pp.Port == port
			}
			for _, peer := range r.To {
				if portOK && peer.IPBlock != nil && peer.IPBlock.CIDR == "0.0.0.0/0" && !slices.Contains(peer.IPBlock.Except, "8.0.0.0/8") {
					return true
				}
			}
		}
	}
	return !selected
}

// TestOpenFaaSFunctionsAreReachedOnlyThroughOpenFaaS: on the OpenFaaS path
// (namespace openfaas-fn) a function is reached only by OpenFaaS's gateway
// and queue-worker, never by another function, the kafka-trigger or a pod
// elsewhere; it reaches billfn's PostgreSQL, Redis, Kafka and stripe-mock
// and the gateway (read-throughs), HTTPS outside, and nothing else — and
// only generate-invoice, which sends the emails, reaches SMTP.
func TestOpenFaaSFunctionsAreReachedOnlyThroughOpenFaaS(t *testing.T) {
	pols := loadPolicies(t)
	if !deniesAllIngress(pols, "openfaas-fn") {
		t.Fatal("no default-deny ingress policy selects every pod of openfaas-fn")
	}
	billfn := ns("billfn")
	infra := func(name string) pod {
		return pod{name, billfn, map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "billfn"}}
	}
	kafka := pod{"kafka", billfn, map[string]string{"strimzi.io/cluster": "billfn", "strimzi.io/kind": "Kafka", "strimzi.io/name": "billfn-kafka"}}
	gateway := pod{"gateway", ns("openfaas"), map[string]string{"app": "gateway"}}
	queueWorker := pod{"queue-worker", ns("openfaas"), map[string]string{"app": "queue-worker"}}
	trigger := pod{"the kafka-trigger", ns("openfaas"), map[string]string{"app.kubernetes.io/name": "kafka-trigger", "app.kubernetes.io/part-of": "billfn"}}
	fn := func(name string) pod {
		return pod{name, ns("openfaas-fn"), map[string]string{"faas_function": name, "app": name}}
	}
	for _, name := range clusterStack(t).Names() {
		f := fn(name)
		for _, from := range []pod{gateway, queueWorker} {
			if !reach(pols, from, f, 8080) {
				t.Errorf("%s cannot reach %s on the watchdog's 8080", from.name, name)
			}
		}
		for _, from := range []pod{trigger, fn("other-function"), {"a pod in default", ns("default"), map[string]string{"app": "x"}}, infra("postgres"),
			{"a Knative function", billfn, map[string]string{"serving.knative.dev/service": "generate-invoice"}}} {
			if reach(pols, from, f, 8080) {
				t.Errorf("%s reaches %s directly", from.name, name)
			}
		}
		for _, dep := range []struct {
			p    pod
			port int
		}{{infra("postgres"), 5432}, {infra("redis"), 6379}, {kafka, 9092}, {infra("stripe-mock"), 12111}, {gateway, 8080}} {
			if !reach(pols, f, dep.p, dep.port) {
				t.Errorf("%s cannot reach %s:%d", name, dep.p.name, dep.port)
			}
		}
		if reach(pols, f, infra("postgres"), 6379) || reach(pols, f, pod{"kube-apiserver", ns("default"), map[string]string{"component": "apiserver"}}, 443) {
			t.Errorf("%s reaches pods outside its dependencies", name)
		}
		if !internet(pols, f, 443) {
			t.Errorf("%s cannot reach HTTPS outside the cluster (Stripe, the JWK Set, merchants' endpoints)", name)
		}
		if internet(pols, f, 25) {
			t.Errorf("%s reaches the internet on port 25", name)
		}
		if smtp := internet(pols, f, 587) && internet(pols, f, 465); smtp != (name == "generate-invoice") {
			t.Errorf("%s reaches SMTP submission (587, 465): %v; only generate-invoice sends emails", name, smtp)
		}
	}
}

// TestOnlyGenerateInvoiceReachesSMTPOnKnative: the Knative path's functions
// reach HTTPS outside, and only generate-invoice's two Services reach SMTP
// submission (its emails; the smtp-url secret).
func TestOnlyGenerateInvoiceReachesSMTPOnKnative(t *testing.T) {
	pols := loadPolicies(t)
	for _, name := range clusterStack(t).Names() {
		for _, svc := range []string{name, name + "-events"} {
			p := pod{svc, ns("billfn"), map[string]string{"serving.knative.dev/service": svc}}
			if !internet(pols, p, 443) {
				t.Errorf("%s cannot reach HTTPS outside the cluster", svc)
			}
			if smtp := internet(pols, p, 587) && internet(pols, p, 465); smtp != (name == "generate-invoice") {
				t.Errorf("%s reaches SMTP submission (587, 465): %v; only generate-invoice sends emails", svc, smtp)
			}
		}
	}
}
