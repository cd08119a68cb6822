package gateway

// The OpenFaaS provider API under /system, as faas-provider's router and
// types define it (github.com/openfaas/faas-provider: serve.go, types/,
// logs/), so faas-cli and anything else written against OpenFaaS work
// unchanged. The JSON shapes are our own types, field for field theirs.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/problem"
)

// FunctionDeployment is the body of POST and PUT /system/functions
// (faas-provider types.FunctionDeployment).
type FunctionDeployment struct {
	Service                string             `json:"service"`
	Image                  string             `json:"image"`
	Namespace              string             `json:"namespace,omitempty"`
	EnvProcess             string             `json:"envProcess,omitempty"`
	EnvVars                map[string]string  `json:"envVars,omitempty"`
	Constraints            []string           `json:"constraints,omitempty"`
	Secrets                []string           `json:"secrets,omitempty"`
	Labels                 *map[string]string `json:"labels,omitempty"`
	Annotations            *map[string]string `json:"annotations,omitempty"`
	Limits                 *Resources         `json:"limits,omitempty"`
	Requests               *Resources         `json:"requests,omitempty"`
	ReadOnlyRootFilesystem bool               `json:"readOnlyRootFilesystem,omitempty"`
}

// ScaleServiceRequest is the body of POST /system/scale-function/{name}.
type ScaleServiceRequest struct {
	ServiceName string `json:"serviceName"`
	Replicas    uint64 `json:"replicas"`
	Namespace   string `json:"namespace,omitempty"`
}

// DeleteFunctionRequest is the body of DELETE /system/functions.
type DeleteFunctionRequest struct {
	FunctionName string `json:"functionName"`
	Namespace    string `json:"namespace,omitempty"`
}

// Secret is one secret of /system/secrets (values are never listed).
type Secret struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Value     string `json:"value,omitempty"`
	RawValue  []byte `json:"rawValue,omitempty"`
}

// ProviderInfo and VersionInfo are /system/info's provider part.
type ProviderInfo struct {
	Name          string       `json:"provider"`
	Version       *VersionInfo `json:"version"`
	Orchestration string       `json:"orchestration"`
}

// VersionInfo names a build.
type VersionInfo struct {
	CommitMessage string `json:"commit_message,omitempty"`
	SHA           string `json:"sha"`
	Release       string `json:"release"`
}

// GatewayInfo is the body of GET /system/info.
type GatewayInfo struct {
	Provider *ProviderInfo `json:"provider"`
	Version  *VersionInfo  `json:"version"`
	Arch     string        `json:"arch"`
}

// LogRequest is what GET /system/logs asks for (faas-provider logs.Request).
type LogRequest struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Instance  string     `json:"instance"`
	Since     *time.Time `json:"since"`
	Tail      int        `json:"tail"` // <= 0: all
	Follow    bool       `json:"follow"`
}

// LogMessage is one line of GET /system/logs (faas-provider logs.Message).
type LogMessage struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Instance  string    `json:"instance"`
	Timestamp time.Time `json:"timestamp"`
	Text      string    `json:"text"`
}

// Provider runs the functions behind the gateway (cmd/stack's processes).
// Its errors are problem documents: problem.NotFound for an unknown
// function or secret, problem.BadRequest for a deployment it cannot run,
// problem.Conflict for a secret that exists.
type Provider interface {
	// Deploy creates (update false) or replaces (true) a function; the
	// gateway has checked the name. It returns once the change is under
	// way, as OpenFaaS answers 202 before the replicas are ready.
	Deploy(ctx context.Context, d FunctionDeployment, update bool) error
	Delete(ctx context.Context, name string) error
	Scale(ctx context.Context, name string, replicas uint64) error
	Secrets(ctx context.Context) ([]Secret, error)
	// PutSecret creates (update false) or replaces a secret.
	PutSecret(ctx context.Context, s Secret, update bool) error
	DeleteSecret(ctx context.Context, name string) error
	// Logs returns the function's lines; the channel closes at the end
	// (at once without Follow; with Follow when ctx ends).
	Logs(ctx context.Context, r LogRequest) (<-chan LogMessage, error)
	Info() ProviderInfo
}

// Waker is a Provider that starts a function scaled to zero when a call
// for it comes (the gateway then holds the call until a replica is ready).
type Waker interface {
	Wake(name string)
}

// nameRE is a valid function or secret name: a DNS-1123 label, as
// faas-netes requires of a service name.
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidName reports whether name can name a function or a secret.
func ValidName(name string) bool { return len(name) <= 63 && nameRE.MatchString(name) }

func invalidName(what, name string) error {
	return problem.New(problem.BadRequest, "%q is not a valid %s name: lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit (a DNS-1123 label, as OpenFaaS requires)", name, what)
}

func (g *Gateway) system(w http.ResponseWriter, r *http.Request) {
	if !g.systemAuthorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="billfn gateway", charset="UTF-8"`)
		problem.Write(w, r, problem.New(problem.Unauthorized, "the /system API needs the gateway's basic-auth credentials (bin/run/secrets/basic-auth-user and basic-auth-password; make run prints them)"))
		return
	}
	if ns := r.URL.Query().Get("namespace"); ns != "" && ns != Namespace {
		problem.Write(w, r, problem.New(problem.BadRequest, "namespace %q is not allowed: the only function namespace is %s", ns, Namespace))
		return
	}
	p := r.URL.Path
	switch {
	case p == "/system/functions":
		switch r.Method {
		case http.MethodGet:
			g.listFunctions(w)
		case http.MethodPost, http.MethodPut:
			g.deploy(w, r, r.Method == http.MethodPut)
		case http.MethodDelete:
			g.deleteFunction(w, r)
		default:
			notAllowed(w, r, "GET, POST, PUT, DELETE")
		}
	case strings.HasPrefix(p, "/system/function/"):
		if r.Method != http.MethodGet {
			notAllowed(w, r, "GET")
			return
		}
		name := strings.TrimPrefix(p, "/system/function/")
		if fn, ns, ok := strings.Cut(name, "."); ok && ns == Namespace {
			name = fn
		}
		b := g.backend(name)
		if b == nil {
			problem.Write(w, r, problem.New(problem.NotFound, "function %q is not deployed", name))
			return
		}
		writeJSON(w, b.status())
	case strings.HasPrefix(p, "/system/scale-function/"):
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return
		}
		g.scale(w, r, strings.TrimPrefix(p, "/system/scale-function/"))
	case p == "/system/info":
		if r.Method != http.MethodGet {
			notAllowed(w, r, "GET")
			return
		}
		info := GatewayInfo{Arch: arch(), Version: buildVersion()}
		if g.cfg.Provider != nil {
			pi := g.cfg.Provider.Info()
			info.Provider = &pi
		} else {
			info.Provider = &ProviderInfo{Name: "billfn-gateway", Orchestration: "static", Version: buildVersion()}
		}
		writeJSON(w, info)
	case p == "/system/namespaces":
		if r.Method != http.MethodGet {
			notAllowed(w, r, "GET")
			return
		}
		writeJSON(w, []string{Namespace})
	case p == "/system/secrets":
		g.secrets(w, r)
	case p == "/system/logs":
		if r.Method != http.MethodGet {
			notAllowed(w, r, "GET")
			return
		}
		g.logs(w, r)
	default:
		problem.Write(w, r, problem.New(problem.NotFound, "no gateway route for %s", p))
	}
}

func notAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	problem.Write(w, r, problem.New(problem.MethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
}

// provider returns the provider, or answers that this gateway has none.
func (g *Gateway) provider(w http.ResponseWriter, r *http.Request) Provider {
	if g.cfg.Provider == nil {
		notAllowed(w, r, "GET")
		return nil
	}
	return g.cfg.Provider
}

// decode reads a JSON body of at most 1 MiB into v; unknown members are
// ignored, as OpenFaaS's providers do.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem.Write(w, r, problem.New(problem.PayloadTooLarge, "the body is larger than 1 MiB"))
		} else {
			problem.Write(w, r, problem.New(problem.BadRequest, "the body is not the JSON this route takes: %v", err))
		}
		return false
	}
	return true
}

func (g *Gateway) listFunctions(w http.ResponseWriter) {
	bs := *g.backends.Load()
	names := make([]string, 0, len(bs))
	for n := range bs {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]FunctionStatus, 0, len(names))
	for _, n := range names {
		out = append(out, bs[n].status())
	}
	writeJSON(w, out)
}

func (g *Gateway) deploy(w http.ResponseWriter, r *http.Request, update bool) {
	p := g.provider(w, r)
	if p == nil {
		return
	}
	var d FunctionDeployment
	if !decode(w, r, &d) {
		return
	}
	if d.Namespace != "" && d.Namespace != Namespace {
		problem.Write(w, r, problem.New(problem.BadRequest, "namespace %q is not allowed: the only function namespace is %s", d.Namespace, Namespace))
		return
	}
	if !ValidName(d.Service) {
		problem.Write(w, r, invalidName("function", d.Service))
		return
	}
	if d.Image == "" {
		problem.Write(w, r, problem.New(problem.BadRequest, "image is required"))
		return
	}
	if err := p.Deploy(r.Context(), d, update); err != nil {
		problem.Write(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (g *Gateway) deleteFunction(w http.ResponseWriter, r *http.Request) {
	p := g.provider(w, r)
	if p == nil {
		return
	}
	var d DeleteFunctionRequest
	if !decode(w, r, &d) {
		return
	}
	if d.FunctionName == "" {
		problem.Write(w, r, problem.New(problem.BadRequest, "functionName is required"))
		return
	}
	if !ValidName(d.FunctionName) {
		problem.Write(w, r, invalidName("function", d.FunctionName))
		return
	}
	if err := p.Delete(r.Context(), d.FunctionName); err != nil {
		problem.Write(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (g *Gateway) scale(w http.ResponseWriter, r *http.Request, name string) {
	p := g.provider(w, r)
	if p == nil {
		return
	}
	if !ValidName(name) {
		problem.Write(w, r, invalidName("function", name))
		return
	}
	var req ScaleServiceRequest
	if !decode(w, r, &req) {
		return
	}
	if err := p.Scale(r.Context(), name, req.Replicas); err != nil {
		problem.Write(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (g *Gateway) secrets(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		var list []Secret
		if g.cfg.Provider != nil {
			var err error
			if list, err = g.cfg.Provider.Secrets(r.Context()); err != nil {
				problem.Write(w, r, err)
				return
			}
		}
		if list == nil {
			list = []Secret{}
		}
		writeJSON(w, list)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodDelete {
		notAllowed(w, r, "GET, POST, PUT, DELETE")
		return
	}
	p := g.provider(w, r)
	if p == nil {
		return
	}
	var s Secret
	if !decode(w, r, &s) {
		return
	}
	if s.Namespace != "" && s.Namespace != Namespace {
		problem.Write(w, r, problem.New(problem.BadRequest, "namespace %q is not allowed: the only function namespace is %s", s.Namespace, Namespace))
		return
	}
	if !ValidName(s.Name) {
		problem.Write(w, r, invalidName("secret", s.Name))
		return
	}
	var err error
	status := http.StatusAccepted
	switch r.Method {
	case http.MethodPost:
		err, status = p.PutSecret(r.Context(), s, false), http.StatusCreated
	case http.MethodPut:
		err = p.PutSecret(r.Context(), s, true)
	default:
		err = p.DeleteSecret(r.Context(), s.Name)
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.WriteHeader(status)
}

// logs streams the function's log lines as newline-delimited JSON, one
// LogMessage a line, flushed as they come, as faas-provider's log
// handler does (query: name, instance, since RFC 3339, tail, follow).
func (g *Gateway) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	last := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	req := LogRequest{Name: last("name"), Namespace: last("namespace"), Instance: last("instance")}
	if v := last("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			problem.Write(w, r, problem.New(problem.ValidationFailed, "tail must be an integer, not %q", v))
			return
		}
		req.Tail = n
	}
	req.Follow, _ = strconv.ParseBool(last("follow"))
	if v := last("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			problem.Write(w, r, problem.New(problem.ValidationFailed, "since must be an RFC 3339 time, not %q", v))
			return
		}
		req.Since = &t
	}
	if req.Name == "" {
		problem.Write(w, r, problem.New(problem.BadRequest, "name is required"))
		return
	}
	p := g.cfg.Provider
	if p == nil || g.backend(req.Name) == nil {
		problem.Write(w, r, problem.New(problem.NotFound, "function %q is not deployed", req.Name))
		return
	}
	msgs, err := p.Logs(r.Context(), req)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for m := range msgs {
		if enc.Encode(m) != nil {
			break
		}
		// Flush when nothing else is waiting: a burst goes out in one write.
		if flusher != nil && len(msgs) == 0 {
			flusher.Flush()
		}
	}
	// Drain what the provider still sends, so it never blocks.
	go func() {
		for range msgs {
		}
	}()
}

func (b *backend) status() FunctionStatus {
	s := b.fn.Status
	s.InvocationCount = float64(b.invocations.Load())
	s.Replicas, s.AvailableReplicas = 1, 1
	if b.fn.State != nil {
		s.Replicas, s.AvailableReplicas, s.CreatedAt = b.fn.State()
	}
	return s
}

func arch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "arm64"
	}
	return runtime.GOARCH
}

// buildVersion is this binary's VCS revision, as far as the build knows it.
func buildVersion() *VersionInfo {
	v := &VersionInfo{Release: "dev"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Release = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.SHA = s.Value
			}
		}
	}
	return v
}
