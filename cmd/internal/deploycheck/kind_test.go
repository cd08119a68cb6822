package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	kind "sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/billfn/billfn/cmd/internal/stackfile"
)

const root = "../../.."

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeVar returns the default of a "NAME ?= value" Makefile variable.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s*\?=\s*(\S+)`).FindStringSubmatch(read(t, "Makefile"))
	if m == nil {
		t.Fatalf("the Makefile has no %s ?= ...", name)
	}
	return m[1]
}

func loadKind(t *testing.T) kind.Cluster {
	t.Helper()
	var c kind.Cluster
	if err := yaml.UnmarshalStrict([]byte(read(t, "kind-config.yaml")), &c); err != nil {
		t.Fatalf("kind-config.yaml does not decode strictly into kind's v1alpha4 Cluster: %v", err)
	}
	return c
}

func TestKindConfigIsAValidV1Alpha4Cluster(t *testing.T) {
	c := loadKind(t)
	if c.APIVersion != "kind.x-k8s.io/v1alpha4" || c.Kind != "Cluster" {
		t.Errorf("apiVersion %q kind %q", c.APIVersion, c.Kind)
	}
	if c.Name != makeVar(t, "KIND_CLUSTER") {
		t.Errorf("cluster name %q, the Makefile's KIND_CLUSTER is %q", c.Name, makeVar(t, "KIND_CLUSTER"))
	}
	if len(c.Nodes) == 0 || c.Nodes[0].Role != kind.ControlPlaneRole {
		t.Fatalf("nodes %+v", c.Nodes)
	}
	if len(c.ContainerdConfigPatches) == 0 || !strings.Contains(c.ContainerdConfigPatches[0], "/etc/containerd/certs.d") {
		t.Error("containerd does not read /etc/containerd/certs.d, where make kind-up registers the local registry")
	}
}

// hostPortOf returns the host port mapped to a node port.
func hostPortOf(c kind.Cluster, nodePort int32) (int32, string, bool) {
	for _, n := range c.Nodes {
		for _, m := range n.ExtraPortMappings {
			if m.ContainerPort == nodePort {
				return m.HostPort, m.ListenAddress, true
			}
		}
	}
	return 0, "", false
}

func TestKindPortsMatchTheMakefileStackAndDocs(t *testing.T) {
	c := loadKind(t)
	ofNode, _ := strconv.Atoi(makeVar(t, "OPENFAAS_NODEPORT"))
	kourierNode, _ := strconv.Atoi(makeVar(t, "KOURIER_NODEPORT"))
	if ofNode != 31112 || kourierNode != 31080 {
		t.Errorf("Makefile NodePorts %d and %d, want 31112 (OpenFaaS) and 31080 (kourier)", ofNode, kourierNode)
	}
	gwPort, addr, ok := hostPortOf(c, int32(ofNode))
	if !ok || gwPort != 8080 || addr != "127.0.0.1" {
		t.Errorf("NodePort %d maps to %s:%d, want 127.0.0.1:8080", ofNode, addr, gwPort)
	}
	if hp, addr, ok := hostPortOf(c, int32(kourierNode)); !ok || hp != 80 || addr != "127.0.0.1" {
		t.Errorf("NodePort %d maps to %s:%d, want 127.0.0.1:80", kourierNode, addr, hp)
	}
	// The gateway faas-cli deploys to is that host port.
	st, err := stackfile.Load(filepath.Join(root, "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://127.0.0.1:" + strconv.Itoa(int(gwPort)); st.Provider.Gateway != want || makeVar(t, "OPENFAAS_URL") != want {
		t.Errorf("stack.yml provider %q, Makefile OPENFAAS_URL %q, kind maps the gateway to %s", st.Provider.Gateway, makeVar(t, "OPENFAAS_URL"), want)
	}
	mk := read(t, "Makefile")
	if !strings.Contains(mk, "gateway.nodePort=$(OPENFAAS_NODEPORT)") || !strings.Contains(mk, `"nodePort":$(KOURIER_NODEPORT)`) {
		t.Error("the Makefile does not pin the OpenFaaS and kourier NodePorts it maps")
	}
	// The registry kind pulls from is the default image registry.
	reg := "localhost:" + makeVar(t, "KIND_REG_PORT")
	if makeVar(t, "REGISTRY") != reg || !strings.HasPrefix(st.Functions["process-transaction"].Image, reg+"/") {
		t.Errorf("REGISTRY %q and stack.yml images must use the kind registry %s", makeVar(t, "REGISTRY"), reg)
	}
	// Every document that names the ports names them right.
	for _, doc := range []string{"docs/platform.md", "README.md"} {
		text := read(t, doc)
		for _, m := range regexp.MustCompile(`NodePort\s+(\d{5})`).FindAllStringSubmatch(text, -1) {
			if m[1] != "31112" && m[1] != "31080" {
				t.Errorf("%s mentions NodePort %s, which kind-config.yaml does not map", doc, m[1])
			}
		}
	}
	guide := read(t, "docs/platform.md")
	for _, want := range []string{"31112", "31080", "127.0.0.1:8080", "localhost:5001"} {
		if !strings.Contains(guide, want) {
			t.Errorf("docs/platform.md never mentions %s", want)
		}
	}
}
