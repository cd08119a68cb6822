package main

// The local provider: what the gateway's OpenFaaS /system API deploys,
// updates, scales and removes, as processes on this machine. A deployment
// names an image; the provider finds the stack.yml function with that
// image, builds its source (handler + build_args.FUNCTION) with go build
// and runs as many processes as the function has replicas, each on its own
// port, behind the gateway's least-inflight balancing.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/cmd/internal/kafkaacl"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/problem"
)

// The OpenFaaS labels the provider honours.
const (
	labelScaleMin = "com.openfaas.scale.min"
	labelScaleMax = "com.openfaas.scale.max"
	// defaultScaleMax is OpenFaaS's default com.openfaas.scale.max.
	defaultScaleMax = 20
	// labelScaleZero lets an idle function scale to zero after
	// labelScaleZeroDuration (default 15m, OpenFaaS's).
	labelScaleZero         = "com.openfaas.scale.zero"
	labelScaleZeroDuration = "com.openfaas.scale.zero-duration"
	defaultZeroDuration    = 15 * time.Minute
)

// function is one function as the local stack runs it: a stack.yml one
// (spec set from the start) or one deployed through /system/functions.
type function struct {
	name string
	spec *stackfile.Function // the stack.yml function it is built from
	home string              // the first replica's address while free ("" when none)
	skip string              // why a stack.yml function is not deployed at start

	op sync.Mutex // one deploy, scale or delete of this function at a time

	mu        sync.Mutex
	dep       *gateway.FunctionDeployment // nil: not deployed
	env       []string                    // the processes' environment but PORT
	bin       string
	replicas  []*proc
	retiring  []*proc // an update's old replicas, still taking calls until the new ones are healthy
	desired   uint64
	minR      uint64
	maxR      uint64
	zero      time.Duration // idle time after which it scales to zero; 0: never
	auto      *autoscale    // its autoscaler's rule; nil: the replicas it is given
	scaledAt  time.Time     // last scale up (a wake counts)
	createdAt time.Time
	seq       int   // replicas started so far (instance names)
	homeBy    *proc // the replica on home
	rs        *gateway.ReplicaSet
}

func (f *function) deployed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dep != nil
}

// addrs lists where its replicas listen now.
func (f *function) addrs() []string {
	f.mu.Lock()
	reps := slices.Clone(f.replicas)
	f.mu.Unlock()
	var out []string
	for _, p := range reps {
		if a := p.currentAddr(); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// state is the status the gateway shows: replicas wanted, replicas
// ready, when the deployment was made.
func (f *function) state() (uint64, uint64, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ready uint64
	for _, p := range f.replicas {
		if p.ready.Load() {
			ready++
		}
	}
	return f.desired, ready, f.createdAt
}

// publish hands the gateway the current replicas.
func (f *function) publish() {
	f.mu.Lock()
	reps := append(slices.Clone(f.retiring), f.replicas...)
	rs := f.rs
	f.mu.Unlock()
	if rs == nil {
		return
	}
	eps := make([]gateway.Endpoint, 0, len(reps))
	for _, p := range reps {
		if a := p.currentAddr(); a != "" {
			eps = append(eps, gateway.Endpoint{Addr: a, Generation: p.generation, Ready: p.ready.Load})
		}
	}
	rs.Set(eps...)
}

// fn returns the function called name (deployed or not).
func (s *stack) fn(name string) *function {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fns[name]
}

// deploymentOf is stack.yml's function as the deployment faas-cli deploy
// would send for it.
func deploymentOf(name string, spec *stackfile.Function) gateway.FunctionDeployment {
	labels, annotations := maps.Clone(spec.Labels), maps.Clone(spec.Annotations)
	d := gateway.FunctionDeployment{
		Service: name, Image: spec.Image, Namespace: gateway.Namespace, EnvProcess: spec.FProcess,
		EnvVars: maps.Clone(spec.Environment), Constraints: spec.Constraints, Secrets: slices.Clone(spec.Secrets),
		Labels: &labels, Annotations: &annotations, ReadOnlyRootFilesystem: spec.ReadOnlyRootFilesystem,
	}
	if spec.Limits != nil {
		d.Limits = &gateway.Resources{Memory: spec.Limits.Memory, CPU: spec.Limits.CPU}
	}
	if spec.Requests != nil {
		d.Requests = &gateway.Resources{Memory: spec.Requests.Memory, CPU: spec.Requests.CPU}
	}
	return d
}

// plan is what a deployment request becomes: checked, with its source.
type plan struct {
	dep        gateway.FunctionDeployment
	src        *stackfile.Function
	env        []string
	minR, maxR uint64
	zero       time.Duration
	auto       *autoscale
}

func badRequest(format string, args ...any) error {
	return problem.New(problem.BadRequest, format, args...)
}

// reservedSecrets live in bin/run/secrets but are the stack's, not the
// functions' (on a cluster they are in another namespace than
// openfaas-fn): never listed, mounted, created or removed through the API.
var reservedSecrets = []string{jwtPrivateKey, basicAuthUser, basicAuthPassword, integratorOriginKey, functionsSubdir,
	kafkaacl.PasswordSecret(kafkaSuperuser), kafkaacl.PasswordSecret(kafkaacl.Trigger)}

// source finds the stack.yml function a deployment's image is built from:
// the same image, or else the same repository name (the part after the
// last / without the tag), so ${REGISTRY} and ${TAG} may differ.
func (s *stack) source(image string) *stackfile.Function {
	for _, name := range s.st.Names() {
		if s.st.Functions[name].Image == image {
			return s.st.Functions[name]
		}
	}
	repo := func(img string) string {
		img, _, _ = strings.Cut(img, "@")
		if i := strings.LastIndexByte(img, '/'); i >= 0 {
			img = img[i+1:]
		}
		img, _, _ = strings.Cut(img, ":")
		return img
	}
	for _, name := range s.st.Names() {
		if repo(s.st.Functions[name].Image) == repo(image) {
			return s.st.Functions[name]
		}
	}
	return nil
}

// check turns a deployment into a plan or says what is wrong with it.
func (s *stack) check(d gateway.FunctionDeployment) (*plan, error) {
	if d.Service == kafkaacl.Trigger {
		return nil, badRequest("%s is the kafka-trigger's name on this stack; choose another", d.Service)
	}
	src := s.source(d.Image)
	if src == nil {
		var imgs []string
		for _, n := range s.st.Names() {
			imgs = append(imgs, s.st.Functions[n].Image)
		}
		return nil, badRequest("image %q is not the image of a function in stack.yml; the local stack builds a function from its source there (handler and build_args.FUNCTION) and knows: %s", d.Image, strings.Join(imgs, ", "))
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Root, src.Dir(), "main.go")); err != nil {
		return nil, badRequest("image %q is built from %s, which has no main.go", d.Image, src.Dir())
	}
	p := &plan{dep: d, src: src, minR: 1, maxR: defaultScaleMax}
	if p.dep.Namespace == "" {
		p.dep.Namespace = gateway.Namespace
	}
	var labels, annotations map[string]string
	if d.Labels != nil {
		labels = *d.Labels
	}
	if d.Annotations != nil {
		annotations = *d.Annotations
	}
	if _, err := stackfile.ParseSubscription(annotations); err != nil {
		return nil, badRequest("annotations: %v", err)
	}
	for k, dst := range map[string]*uint64{labelScaleMin: &p.minR, labelScaleMax: &p.maxR} {
		if v, ok := labels[k]; ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return nil, badRequest("label %s must be a whole number, not %q", k, v)
			}
			*dst = n
		}
	}
	if v, ok := labels[labelScaleZero]; ok {
		on, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return nil, badRequest("label %s must be true or false, not %q", labelScaleZero, v)
		}
		if on {
			p.zero = defaultZeroDuration
			if v, ok := labels[labelScaleZeroDuration]; ok {
				d, err := time.ParseDuration(strings.TrimSpace(v))
				if err != nil || d < time.Second {
					return nil, badRequest("label %s must be a duration of at least 1s such as 15m, not %q", labelScaleZeroDuration, v)
				}
				p.zero = d
			}
		}
	}
	auto, err := parseAutoscale(labels)
	if err != nil {
		return nil, err
	}
	p.auto = auto
	if p.maxR < 1 || p.minR > p.maxR {
		return nil, badRequest("labels: %s (%d) must be at least 1 and not below %s (%d)", labelScaleMax, p.maxR, labelScaleMin, p.minR)
	}
	env := baseEnv()
	for _, k := range slices.Sorted(maps.Keys(d.EnvVars)) {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(d.EnvVars[k], "\x00") {
			return nil, badRequest("envVars: %q is not an environment variable name", k)
		}
		if k == "PORT" || k == "SECRETS_DIR" {
			continue // the stack's: each replica's port, the function's secrets folder
		}
		env = append(env, k+"="+d.EnvVars[k])
	}
	if d.EnvProcess != "" {
		env = append(env, "fprocess="+d.EnvProcess)
	}
	if d.Limits != nil && d.Limits.Memory != "" {
		n, err := parseQuantity(d.Limits.Memory)
		if err != nil {
			return nil, badRequest("limits.memory: %v", err)
		}
		// GOMEMLIMIT is a soft limit: 90 %, so the collector works
		// harder before the hard limit a container would enforce.
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(n/10*9, 10))
	}
	for _, sec := range d.Secrets {
		if !gateway.ValidName(sec) || slices.Contains(reservedSecrets, sec) {
			return nil, badRequest("secrets: %q is not a secret of namespace %s", sec, gateway.Namespace)
		}
		if _, err := os.Stat(filepath.Join(s.cfg.secretsDir(), sec)); err != nil {
			return nil, badRequest("secrets: %q does not exist; create it first (faas-cli secret create %s)", sec, sec)
		}
	}
	env = append(env, "SECRETS_DIR="+s.cfg.functionSecretsDir(d.Service))
	// Tracing to the stack's collector, unless the deployment names its own.
	for _, kv := range s.cfg.otelEnv(d.Service) {
		if k, _, _ := strings.Cut(kv, "="); d.EnvVars[k] == "" {
			env = append(env, kv)
		}
	}
	p.env = env
	return p, nil
}

// parseQuantity reads a Kubernetes memory quantity (128Mi, 1G, 512000)
// in bytes.
func parseQuantity(q string) (int64, error) {
	q = strings.TrimSpace(q)
	units := []struct {
		suffix string
		mult   float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(q, u.suffix) {
			q, mult = strings.TrimSuffix(q, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(q, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || v*mult > 1<<50 {
		return 0, fmt.Errorf("%q is not a memory quantity such as 256Mi", q)
	}
	return int64(v * mult), nil
}

// Deploy implements gateway.Provider.
func (s *stack) Deploy(ctx context.Context, d gateway.FunctionDeployment, update bool) error {
	s.mu.Lock()
	f := s.fns[d.Service]
	if f == nil {
		f = &function{name: d.Service, home: s.homes[d.Service]}
		s.fns[d.Service] = f
	}
	s.mu.Unlock()
	f.op.Lock()
	defer f.op.Unlock()
	exists := f.deployed()
	switch {
	case update && !exists:
		return problem.New(problem.NotFound, "function %q is not deployed", d.Service)
	case !update && exists:
		return problem.New(problem.Conflict, "function %q is already deployed; update it with PUT", d.Service)
	}
	p, err := s.check(d)
	if err != nil {
		return err
	}
	bin := filepath.Join(s.cfg.binDir(), d.Service)
	if err := s.buildOne(ctx, p.src, bin); err != nil {
		return err
	}
	if err := s.mountSecrets(d.Service, d.Secrets); err != nil {
		return err
	}
	s.rollout(f, p, bin)
	if d.EnvVars != nil {
		for k, v := range d.EnvVars {
			if strings.Contains(v, ".svc.cluster.local") {
				s.log.printf("stack", "%s: %s=%s names a cluster address, which does not resolve here; deploy with the local addresses (set -a; . %s; set +a) before faas-cli deploy", d.Service, k, v, s.cfg.envFile())
				break
			}
		}
	}
	return nil
}

// buildOne compiles src into bin (through a temporary name, so running
// replicas keep their executable).
func (s *stack) buildOne(ctx context.Context, src *stackfile.Function, bin string) error {
	tmp := bin + ".new"
	cmd := goBuildCmd(ctx, "go", "-o", tmp, "./"+filepath.ToSlash(src.Dir()))
	cmd.Dir = s.cfg.Root
	w := &lineWriter{log: s.log, name: "build"}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &teeWriter{w, &out}, &teeWriter{w, &out}
	s.log.printf("build", "go build -o %s ./%s", bin, src.Dir())
	err := cmd.Run()
	w.Flush()
	if err != nil {
		_ = os.Remove(tmp)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return problem.New(problem.BadRequest, "%s does not build: %s", src.Dir(), strings.TrimSpace(out.String()))
	}
	return os.Rename(tmp, bin)
}

type teeWriter struct {
	a *lineWriter
	b *strings.Builder
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.b.Write(p)
	return t.a.Write(p)
}

// rollout replaces f's deployment with p: new replicas start with the new
// environment; the gateway moves to them once they are healthy (or after
// a minute), then the old ones stop — a rolling update, as Kubernetes
// does one for OpenFaaS. The caller holds f.op.
func (s *stack) rollout(f *function, p *plan, bin string) {
	f.mu.Lock()
	first := f.dep == nil
	old := f.replicas
	n := f.desired
	if first {
		n = max(p.minR, 1)
	}
	n = min(max(n, p.minR), p.maxR)
	dep := p.dep
	f.dep, f.env, f.bin, f.minR, f.maxR, f.desired, f.zero, f.auto = &dep, p.env, bin, p.minR, p.maxR, n, p.zero, p.auto
	f.createdAt = time.Now().UTC()
	f.scaledAt = time.Now()
	if f.rs == nil {
		f.rs = gateway.NewReplicaSet()
	}
	f.replicas, f.retiring = nil, old
	f.mu.Unlock()
	var news []*proc
	for i := uint64(0); i < n; i++ {
		news = append(news, s.startReplica(f))
	}
	s.register(f)
	if len(old) == 0 {
		f.publish()
		return
	}
	// Until the new replicas are healthy, the gateway keeps the old ones.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	for _, p := range news {
		p.waitHealthy(ctx)
	}
	cancel()
	f.mu.Lock()
	f.retiring = nil
	f.mu.Unlock()
	f.publish()
	s.stopReplicas(old)
}

// startReplica starts one more process of f (f.mu not held).
func (s *stack) startReplica(f *function) *proc {
	f.mu.Lock()
	f.seq++
	name := f.name
	if f.seq > 1 {
		name = fmt.Sprintf("%s#%d", f.name, f.seq)
	}
	instance := fmt.Sprintf("%s-%d", f.name, f.seq)
	p := &proc{
		name: name, path: f.bin, dir: s.cfg.Root, env: f.env, log: s.log,
		healthPath: "/_/health",
	}
	p.addrFn = func(p *proc) (string, error) { return s.replicaAddr(f, p) }
	p.onChange = f.publish
	fname := f.name
	p.sink = func(line string) { s.book.add(fname, instance, line) }
	f.replicas = append(f.replicas, p)
	f.mu.Unlock()
	if err := p.start(); err != nil {
		s.log.printf("stack", "%s: %v", name, err)
	}
	return p
}

// replicaAddr is where replica p of f listens next: f's home address
// when no other replica has it, else a free port the kernel picks.
func (s *stack) replicaAddr(f *function, p *proc) (string, error) {
	f.mu.Lock()
	if f.home != "" && (f.homeBy == nil || f.homeBy == p) {
		f.homeBy = p
		f.mu.Unlock()
		return f.home, nil
	}
	f.mu.Unlock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// stopReplicas stops processes (SIGTERM: they drain) and frees their home.
func (s *stack) stopReplicas(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(15 * time.Second)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	fns := slices.Collect(maps.Values(s.fns))
	s.mu.Unlock()
	for _, f := range fns {
		f.mu.Lock()
		if f.homeBy != nil && slices.Contains(ps, f.homeBy) {
			f.homeBy = nil
		}
		f.mu.Unlock()
	}
}

// register puts f's status on the gateway.
func (s *stack) register(f *function) {
	if s.gateway == nil {
		return
	}
	s.gateway.Put(s.gatewayFunction(f))
}

func (s *stack) gatewayFunction(f *function) gateway.Function {
	f.mu.Lock()
	d := *f.dep
	rs := f.rs
	f.mu.Unlock()
	var labels, annotations map[string]string
	if d.Labels != nil {
		labels = maps.Clone(*d.Labels)
	}
	if d.Annotations != nil {
		annotations = maps.Clone(*d.Annotations)
	}
	// The schedule annotation stays the cluster's (what faas-cli
	// deployed); what runs here is a tick every BILLFN_TICK_EVERY.
	if _, ok := annotations[stackfile.AnnotationSchedule]; ok {
		annotations[AnnotationLocalTick] = s.cfg.TickEvery.String()
	}
	st := gateway.FunctionStatus{
		Name: d.Service, Image: d.Image, Namespace: gateway.Namespace, EnvProcess: d.EnvProcess, EnvVars: d.EnvVars,
		Constraints: d.Constraints, Secrets: d.Secrets, Labels: &labels, Annotations: &annotations,
		Limits: d.Limits, Requests: d.Requests, ReadOnlyRootFilesystem: d.ReadOnlyRootFilesystem,
	}
	return gateway.Function{Status: st, Replicas: rs, State: f.state}
}

// Delete implements gateway.Provider.
func (s *stack) Delete(ctx context.Context, name string) error {
	f := s.fn(name)
	if f == nil {
		return problem.New(problem.NotFound, "function %q is not deployed", name)
	}
	f.op.Lock()
	defer f.op.Unlock()
	if !f.deployed() {
		return problem.New(problem.NotFound, "function %q is not deployed", name)
	}
	if s.gateway != nil {
		s.gateway.Remove(name)
	}
	f.mu.Lock()
	reps := f.replicas
	f.replicas, f.dep, f.desired = nil, nil, 0
	f.mu.Unlock()
	f.publish()
	s.stopReplicas(reps)
	_ = os.RemoveAll(s.cfg.functionSecretsDir(name))
	s.log.printf("stack", "%s removed", name)
	return nil
}

// Scale implements gateway.Provider: replicas processes from now on, within
// com.openfaas.scale.max; 0 stops them all (calls then wait for a replica
// up to the gateway's hold time).
func (s *stack) Scale(ctx context.Context, name string, replicas uint64) error {
	f := s.fn(name)
	if f == nil {
		return problem.New(problem.NotFound, "function %q is not deployed", name)
	}
	f.op.Lock()
	defer f.op.Unlock()
	return s.scaleLocked(f, replicas)
}

func (s *stack) scaleLocked(f *function, n uint64) error {
	f.mu.Lock()
	if f.dep == nil {
		f.mu.Unlock()
		return problem.New(problem.NotFound, "function %q is not deployed", f.name)
	}
	if n > f.maxR {
		f.mu.Unlock()
		return badRequest("%d replicas is above the function's %s (%d)", n, labelScaleMax, f.maxR)
	}
	if n > 0 && n < f.minR {
		f.mu.Unlock()
		return badRequest("%d replicas is below the function's %s (%d)", n, labelScaleMin, f.minR)
	}
	f.desired = n
	if n > 0 {
		f.scaledAt = time.Now()
	}
	have := uint64(len(f.replicas))
	var drop []*proc
	if n < have {
		drop = f.replicas[n:]
		f.replicas = slices.Clone(f.replicas[:n])
	}
	f.mu.Unlock()
	for i := have; i < n; i++ {
		s.startReplica(f)
	}
	f.publish()
	if len(drop) > 0 {
		s.stopReplicas(drop)
	}
	s.log.printf("stack", "%s scaled to %d replicas", f.name, n)
	return nil
}

// Wake implements gateway.Waker: a function that scaled to zero because
// it was idle (com.openfaas.scale.zero) starts again with its minimum of
// replicas when a call comes. One scaled to 0 by hand stays there.
func (s *stack) Wake(name string) {
	f := s.fn(name)
	if f == nil {
		return
	}
	f.op.Lock()
	defer f.op.Unlock()
	f.mu.Lock()
	wake := f.dep != nil && f.desired == 0 && f.zero > 0
	n := max(f.minR, 1)
	f.mu.Unlock()
	if wake {
		s.log.printf("stack", "%s: a call while scaled to zero; starting %d replica(s)", name, n)
		_ = s.scaleLocked(f, n)
	}
}

// idler scales to zero every function with com.openfaas.scale.zero=true
// that took no call for its zero-duration, until ctx ends.
func (s *stack) idler(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
		s.mu.Lock()
		fns := slices.Collect(maps.Values(s.fns))
		s.mu.Unlock()
		for _, f := range fns {
			f.mu.Lock()
			rs, zero, desired, since := f.rs, f.zero, f.desired, f.scaledAt
			f.mu.Unlock()
			if rs == nil || zero == 0 || desired == 0 || rs.InFlight() > 0 {
				continue
			}
			if last := rs.LastUsed(); last.After(since) {
				since = last
			}
			if time.Since(since) < zero || !f.op.TryLock() {
				continue
			}
			// Again under the lock: a wake or a call may have come meanwhile.
			f.mu.Lock()
			since = f.scaledAt
			still := f.desired > 0
			f.mu.Unlock()
			if last := rs.LastUsed(); last.After(since) {
				since = last
			}
			if still && time.Since(since) >= zero && rs.InFlight() == 0 {
				s.log.printf("stack", "%s: idle for %s; scaling to zero", f.name, zero)
				_ = s.scaleLocked(f, 0)
			}
			f.op.Unlock()
		}
	}
}

// mountSecrets makes the function's secrets folder hold exactly names,
// copied from the store.
func (s *stack) mountSecrets(name string, names []string) error {
	s.secMu.Lock()
	defer s.secMu.Unlock()
	values := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(s.cfg.secretsDir(), n))
		if err != nil {
			return badRequest("secrets: %q does not exist; create it first (faas-cli secret create %s)", n, n)
		}
		values[n] = string(b)
	}
	dir := s.cfg.functionSecretsDir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFunctionSecrets(dir, names, values)
}

// Secrets implements gateway.Provider: the secrets of bin/run/secrets but
// the stack's own.
func (s *stack) Secrets(ctx context.Context) ([]gateway.Secret, error) {
	s.secMu.Lock()
	defer s.secMu.Unlock()
	entries, err := os.ReadDir(s.cfg.secretsDir())
	if err != nil {
		return nil, err
	}
	out := []gateway.Secret{}
	for _, e := range entries {
		if !e.Type().IsRegular() || slices.Contains(reservedSecrets, e.Name()) || !gateway.ValidName(e.Name()) {
			continue
		}
		out = append(out, gateway.Secret{Name: e.Name(), Namespace: gateway.Namespace})
	}
	return out, nil
}

// PutSecret implements gateway.Provider. The value also goes into the
// secrets folder of every deployed function that lists the secret (as a
// mounted Kubernetes secret changes in place).
func (s *stack) PutSecret(ctx context.Context, sec gateway.Secret, update bool) error {
	if slices.Contains(reservedSecrets, sec.Name) {
		return badRequest("secret %q is the stack's own and cannot be written through the API", sec.Name)
	}
	value := []byte(sec.Value)
	if sec.Value == "" {
		value = sec.RawValue
	}
	if len(value) == 0 {
		return badRequest("secret %q has no value", sec.Name)
	}
	s.secMu.Lock()
	defer s.secMu.Unlock()
	path := filepath.Join(s.cfg.secretsDir(), sec.Name)
	_, err := os.Lstat(path)
	exists := err == nil
	switch {
	case update && !exists:
		return problem.New(problem.NotFound, "secret %q does not exist", sec.Name)
	case !update && exists:
		return problem.New(problem.Conflict, "secret %q already exists; update it with PUT", sec.Name)
	}
	if err := os.WriteFile(path, value, 0o600); err != nil {
		return err
	}
	s.mu.Lock()
	fns := slices.Collect(maps.Values(s.fns))
	s.mu.Unlock()
	for _, f := range fns {
		f.mu.Lock()
		uses := f.dep != nil && slices.Contains(f.dep.Secrets, sec.Name)
		f.mu.Unlock()
		if uses {
			if err := os.WriteFile(filepath.Join(s.cfg.functionSecretsDir(f.name), sec.Name), value, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteSecret implements gateway.Provider. Functions that mounted it keep
// their copy until they are deployed again (which then fails until the
// secret exists again), as running pods keep a deleted Secret's volume.
func (s *stack) DeleteSecret(ctx context.Context, name string) error {
	if slices.Contains(reservedSecrets, name) {
		return badRequest("secret %q is the stack's own and cannot be removed through the API", name)
	}
	s.secMu.Lock()
	defer s.secMu.Unlock()
	err := os.Remove(filepath.Join(s.cfg.secretsDir(), name))
	if errors.Is(err, os.ErrNotExist) {
		return problem.New(problem.NotFound, "secret %q does not exist", name)
	}
	return err
}

// Logs implements gateway.Provider.
func (s *stack) Logs(ctx context.Context, r gateway.LogRequest) (<-chan gateway.LogMessage, error) {
	return s.book.query(ctx, r), nil
}

// Info implements gateway.Provider.
func (s *stack) Info() gateway.ProviderInfo {
	v := gateway.ProviderInfo{Name: "billfn-stack", Orchestration: "process"}
	v.Version = &gateway.VersionInfo{Release: "dev"}
	return v
}

// stackVarRE finds the substitutions in a stack file.
var stackVarRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// writeEnvFile writes bin/run/stack.env: every variable stack.yml
// substitutes that the stack gives a value (its own addresses, the
// environment's), as shell exports.
func (s *stack) writeEnvFile() error {
	raw, err := os.ReadFile(s.cfg.StackFile)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# The values make run substituted into stack.yml; source it before faas-cli deploy -f stack.yml\n# against the local gateway: set -a; . " + s.cfg.envFile() + "; set +a\n")
	seen := map[string]bool{}
	for _, m := range stackVarRE.FindAllStringSubmatch(string(raw), -1) {
		k := m[1]
		if seen[k] {
			continue
		}
		seen[k] = true
		if v, ok := s.cfg.lookup(k); ok {
			fmt.Fprintf(&b, "%s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
		}
	}
	return os.WriteFile(s.cfg.envFile(), []byte(b.String()), 0o600)
}
