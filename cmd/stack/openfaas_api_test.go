package main

// The OpenFaaS provider API of the local gateway, driven as faas-cli drives
// it (the request and response shapes of faas-provider's types), against
// the real stack: real builds, real processes.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sys calls the gateway's /system API with its basic-auth credentials.
func (e *e2e) sys(method, path string, body any) response {
	e.t.Helper()
	creds := base64.StdEncoding.EncodeToString([]byte(e.secret("basic-auth-user") + ":" + e.secret("basic-auth-password")))
	return e.req(method, path, body, "Authorization", "Basic "+creds)
}

// functionStatus is what GET /system/function/{name} answers
// (faas-provider types.FunctionStatus).
type functionStatus struct {
	Name              string            `json:"name"`
	Image             string            `json:"image"`
	Namespace         string            `json:"namespace"`
	EnvVars           map[string]string `json:"envVars"`
	Secrets           []string          `json:"secrets"`
	Labels            map[string]string `json:"labels"`
	Annotations       map[string]string `json:"annotations"`
	Limits            map[string]string `json:"limits"`
	Replicas          uint64            `json:"replicas"`
	AvailableReplicas uint64            `json:"availableReplicas"`
	InvocationCount   float64           `json:"invocationCount"`
	CreatedAt         time.Time         `json:"createdAt"`
}

func (e *e2e) functionStatus(name string) (functionStatus, int) {
	e.t.Helper()
	r := e.sys(http.MethodGet, "/system/function/"+name, nil)
	var st functionStatus
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.raw, &st); err != nil {
			e.t.Fatalf("GET /system/function/%s: %v: %s", name, err, r.raw)
		}
	}
	return st, r.status
}

// processesOf lists the stack's processes running the executable name,
// with their environments.
func (e *e2e) processesOf(name string) map[int][]string {
	out := map[int][]string{}
	for _, p := range leftovers(e.marker) {
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "exe"))
		if filepath.Base(exe) != name {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "environ"))
		if err != nil {
			continue
		}
		out[p] = strings.Split(string(env), "\x00")
	}
	return out
}

// logLines reads GET /system/logs (without follow) as NDJSON.
func (e *e2e) logLines(query string) []map[string]any {
	e.t.Helper()
	r := e.sys(http.MethodGet, "/system/logs?"+query, nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
		e.t.Fatalf("GET /system/logs?%s: %s (%s)", query, r, r.header.Get("Content-Type"))
	}
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(r.raw), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			e.t.Fatalf("a log line is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// A function deployed, updated, scaled and removed through the API, as
// faas-cli deploy / scale / remove do: a copy of process-transaction from
// its image, with a secret created through the API.
func TestOpenFaaSAPIFunctionLifecycle(t *testing.T) {
	e := startStack(t, stackOptions{})

	// The deployment: process-transaction's, as the gateway lists it, under
	// another name, without its Kafka subscription.
	base, status := e.functionStatus("process-transaction")
	if status != http.StatusOK {
		t.Fatalf("GET /system/function/process-transaction: %d", status)
	}
	delete(base.Annotations, "topic")
	delete(base.Annotations, "schedule")
	delete(base.Annotations, AnnotationLocalTick)
	if r := e.sys(http.MethodPost, "/system/secrets", map[string]any{"name": "copy-greeting", "value": "hello-1"}); r.status != http.StatusCreated {
		t.Fatalf("POST /system/secrets: %s", r)
	}
	deployment := func(env map[string]string) map[string]any {
		return map[string]any{
			"service": "pt-copy", "image": base.Image, "envVars": env,
			"secrets": append(slices.Clone(base.Secrets), "copy-greeting"), "labels": base.Labels,
			"annotations": base.Annotations, "limits": base.Limits,
		}
	}
	env := func(extra ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base.EnvVars {
			m[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}

	// Bad requests get OpenFaaS's answers.
	for _, c := range []struct {
		method string
		body   any
		want   int
	}{
		{http.MethodPut, deployment(env()), http.StatusNotFound}, // update of a function not deployed
		{http.MethodPost, map[string]any{"service": "Bad_Name", "image": base.Image}, http.StatusBadRequest},
		{http.MethodPost, map[string]any{"service": "pt-other", "image": "example.com/unknown:1"}, http.StatusBadRequest},
		{http.MethodPost, map[string]any{"service": "pt-other", "image": base.Image, "secrets": []string{"no-such-secret"}}, http.StatusBadRequest},
		{http.MethodPost, map[string]any{"service": "pt-other", "image": base.Image, "secrets": []string{"jwt-private-key"}}, http.StatusBadRequest},
		{http.MethodPost, map[string]any{"service": "pt-other", "image": base.Image, "labels": map[string]string{"com.openfaas.scale.max": "x"}}, http.StatusBadRequest},
		{http.MethodPost, "{not json", http.StatusBadRequest},
	} {
		if r := e.sys(c.method, "/system/functions", c.body); r.status != c.want || r.body["code"] == nil {
			t.Errorf("%s /system/functions %v: %s, want %d with a problem document", c.method, c.body, r, c.want)
		}
	}

	// Deploy: 202, then one replica, built from process-transaction's source.
	if r := e.sys(http.MethodPost, "/system/functions", deployment(env("BILLFN_MARK", "v1"))); r.status != http.StatusAccepted {
		t.Fatalf("POST /system/functions: %s", r)
	}
	if r := e.sys(http.MethodPost, "/system/functions", deployment(env())); r.status != http.StatusConflict {
		t.Errorf("POST of a deployed function: %s, want 409", r)
	}
	e.eventually("pt-copy ready", 60*time.Second, func() bool {
		st, _ := e.functionStatus("pt-copy")
		return st.Replicas == 1 && st.AvailableReplicas == 1
	})
	if r := e.req(http.MethodGet, "/function/pt-copy/_/ready", nil); r.status != http.StatusOK {
		t.Fatalf("GET /function/pt-copy/_/ready: %s", r)
	}
	greeting := filepath.Join(e.runDir, "secrets", "functions", "pt-copy", "copy-greeting")
	if b, err := os.ReadFile(greeting); err != nil || string(b) != "hello-1" {
		t.Errorf("the secret in pt-copy's folder: %q, %v; want hello-1", b, err)
	}
	st, _ := e.functionStatus("pt-copy")
	if st.Namespace != "openfaas-fn" || st.Image != base.Image || st.EnvVars["BILLFN_MARK"] != "v1" || !slices.Contains(st.Secrets, "copy-greeting") {
		t.Errorf("status of pt-copy: %+v", st)
	}
	// The list has it too, in faas-provider's shape.
	var list []functionStatus
	if r := e.sys(http.MethodGet, "/system/functions", nil); r.status != http.StatusOK || json.Unmarshal(r.raw, &list) != nil {
		t.Fatalf("GET /system/functions: %s", r)
	}
	if !slices.ContainsFunc(list, func(f functionStatus) bool { return f.Name == "pt-copy" }) {
		t.Errorf("pt-copy is not listed")
	}

	// A secret updated through the API reaches the function's folder.
	if r := e.sys(http.MethodPut, "/system/secrets", map[string]any{"name": "copy-greeting", "value": "hello-2"}); r.status != http.StatusAccepted {
		t.Fatalf("PUT /system/secrets: %s", r)
	}
	if b, _ := os.ReadFile(greeting); string(b) != "hello-2" {
		t.Errorf("after PUT the function's copy is %q, want hello-2", b)
	}

	// Update with a changed environment: the new process sees it, the old
	// one is gone; limits.memory is GOMEMLIMIT (90 % of 256Mi).
	if r := e.sys(http.MethodPut, "/system/functions", deployment(env("BILLFN_MARK", "v2", "LOG_LEVEL", "debug"))); r.status != http.StatusAccepted {
		t.Fatalf("PUT /system/functions: %s", r)
	}
	e.eventually("only v2 processes of pt-copy", 60*time.Second, func() bool {
		ps := e.processesOf("pt-copy")
		if len(ps) != 1 {
			return false
		}
		for _, env := range ps {
			return slices.Contains(env, "BILLFN_MARK=v2") && slices.Contains(env, "GOMEMLIMIT=241591905")
		}
		return false
	})

	// Scale to 3: three processes, availableReplicas 3, and each answers.
	if r := e.sys(http.MethodPost, "/system/scale-function/pt-copy", map[string]any{"serviceName": "pt-copy", "replicas": 3}); r.status != http.StatusAccepted {
		t.Fatalf("POST /system/scale-function/pt-copy: %s", r)
	}
	e.eventually("3 available replicas", 60*time.Second, func() bool {
		st, _ := e.functionStatus("pt-copy")
		return st.Replicas == 3 && st.AvailableReplicas == 3 && len(e.processesOf("pt-copy")) == 3
	})
	for i := 0; i < 30; i++ {
		e.req(http.MethodGet, "/function/pt-copy/accounts/SYS-EXTERNAL-USD", nil)
	}
	answered := map[string]bool{}
	for _, m := range e.logLines("name=pt-copy") {
		if text, _ := m["text"].(string); strings.Contains(text, `"msg":"request"`) && strings.Contains(text, "/accounts/") {
			answered[str(m, "instance")] = true
		}
	}
	if len(answered) != 3 {
		t.Errorf("the replicas that answered: %v, want 3", answered)
	}
	// Beyond com.openfaas.scale.max (5 in stack.yml) is refused.
	if r := e.sys(http.MethodPost, "/system/scale-function/pt-copy", map[string]any{"replicas": 6}); r.status != http.StatusBadRequest {
		t.Errorf("scale above the maximum: %s, want 400", r)
	}
	if r := e.sys(http.MethodPost, "/system/scale-function/nope", map[string]any{"replicas": 1}); r.status != http.StatusNotFound {
		t.Errorf("scale of an unknown function: %s, want 404", r)
	}

	// A replica that dies is replaced.
	victims := e.processesOf("pt-copy")
	for pid := range victims {
		_ = syscallKill(pid)
		break
	}
	e.eventually("3 replicas again after a kill", 60*time.Second, func() bool {
		st, _ := e.functionStatus("pt-copy")
		return st.AvailableReplicas == 3 && len(e.processesOf("pt-copy")) == 3
	})

	// Remove: 404 afterwards, the processes are gone.
	if r := e.sys(http.MethodDelete, "/system/functions", map[string]any{"functionName": "pt-copy"}); r.status != http.StatusAccepted {
		t.Fatalf("DELETE /system/functions: %s", r)
	}
	if _, status := e.functionStatus("pt-copy"); status != http.StatusNotFound {
		t.Errorf("GET /system/function/pt-copy after the removal: %d, want 404", status)
	}
	if r := e.req(http.MethodGet, "/function/pt-copy/_/ready", nil); r.status != http.StatusNotFound {
		t.Errorf("a call after the removal: %s, want 404", r)
	}
	if n := len(e.processesOf("pt-copy")); n != 0 {
		t.Errorf("%d pt-copy processes after the removal", n)
	}
	if r := e.sys(http.MethodDelete, "/system/functions", map[string]any{"functionName": "pt-copy"}); r.status != http.StatusNotFound {
		t.Errorf("a second DELETE: %s, want 404", r)
	}
}

// Secrets CRUD, the logs stream and the informational routes, shaped as
// faas-cli sends and reads them.
func TestOpenFaaSAPISecretsLogsAndInfo(t *testing.T) {
	e := startStack(t, stackOptions{})

	names := func() []string {
		r := e.sys(http.MethodGet, "/system/secrets", nil)
		var list []map[string]any
		if r.status != http.StatusOK || json.Unmarshal(r.raw, &list) != nil {
			t.Fatalf("GET /system/secrets: %s", r)
		}
		var out []string
		for _, s := range list {
			if _, ok := s["value"]; ok {
				t.Errorf("the list shows a value: %v", s)
			}
			out = append(out, str(s, "name"))
		}
		return out
	}
	if r := e.sys(http.MethodPost, "/system/secrets", map[string]any{"name": "api-demo", "value": "one"}); r.status != http.StatusCreated {
		t.Fatalf("POST /system/secrets: %s", r)
	}
	if b, _ := os.ReadFile(filepath.Join(e.runDir, "secrets", "api-demo")); string(b) != "one" {
		t.Errorf("the stored secret: %q", b)
	}
	got := names()
	if !slices.Contains(got, "api-demo") || !slices.Contains(got, "database-url") {
		t.Errorf("GET /system/secrets: %v", got)
	}
	for _, own := range []string{"jwt-private-key", "basic-auth-password", "basic-auth-user", "functions"} {
		if slices.Contains(got, own) {
			t.Errorf("the stack's own %s is listed", own)
		}
	}
	for _, c := range []struct {
		method string
		body   any
		want   int
	}{
		{http.MethodPost, map[string]any{"name": "api-demo", "value": "again"}, http.StatusConflict},
		{http.MethodPut, map[string]any{"name": "api-missing", "value": "x"}, http.StatusNotFound},
		{http.MethodDelete, map[string]any{"name": "api-missing"}, http.StatusNotFound},
		{http.MethodPost, map[string]any{"name": "../escape", "value": "x"}, http.StatusBadRequest},
		{http.MethodPost, map[string]any{"name": "jwt-private-key", "value": "x"}, http.StatusBadRequest},
		{http.MethodPost, map[string]any{"name": "api-empty"}, http.StatusBadRequest},
		{http.MethodPut, map[string]any{"name": "api-demo", "rawValue": base64.StdEncoding.EncodeToString([]byte("two"))}, http.StatusAccepted},
	} {
		if r := e.sys(c.method, "/system/secrets", c.body); r.status != c.want {
			t.Errorf("%s /system/secrets %v: %s, want %d", c.method, c.body, r, c.want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(e.runDir, "secrets", "api-demo")); string(b) != "two" {
		t.Errorf("after PUT with rawValue: %q, want two", b)
	}
	if r := e.sys(http.MethodDelete, "/system/secrets", map[string]any{"name": "api-demo"}); r.status != http.StatusAccepted {
		t.Fatalf("DELETE /system/secrets: %s", r)
	}
	if slices.Contains(names(), "api-demo") {
		t.Errorf("api-demo is still listed after DELETE")
	}

	// Logs: the kept lines as NDJSON, tail and since honoured.
	all := e.logLines("name=process-transaction")
	if len(all) == 0 {
		t.Fatalf("no log lines of process-transaction")
	}
	lines := e.logLines("name=process-transaction&tail=1&follow=false")
	if len(lines) != 1 || str(lines[0], "text") != str(all[len(all)-1], "text") {
		t.Fatalf("tail=1 gave %v, want the last of %d lines", lines, len(all))
	}
	for _, m := range all {
		ts, _ := time.Parse(time.RFC3339Nano, str(m, "timestamp"))
		if str(m, "name") != "process-transaction" || str(m, "namespace") != "openfaas-fn" || str(m, "instance") == "" || ts.IsZero() || str(m, "text") == "" {
			t.Errorf("a log line: %v", m)
		}
	}
	if n := len(e.logLines("name=process-transaction&since=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339))); n != 0 {
		t.Errorf("since an hour ahead: %d lines", n)
	}
	for q, want := range map[string]int{"name=nope": 404, "": 400, "name=process-transaction&tail=x": 422, "name=process-transaction&since=yesterday": 422} {
		if r := e.sys(http.MethodGet, "/system/logs?"+q, nil); r.status != want {
			t.Errorf("GET /system/logs?%s: %s, want %d", q, r, want)
		}
	}
	// follow=true streams new lines: a second replica says it listens.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.gateway+"/system/logs?name=process-transaction&follow=true&since="+time.Now().UTC().Format(time.RFC3339), nil)
	req.SetBasicAuth(e.secret("basic-auth-user"), e.secret("basic-auth-password"))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", res.StatusCode)
	}
	if r := e.sys(http.MethodPost, "/system/scale-function/process-transaction", map[string]any{"replicas": 2}); r.status != http.StatusAccepted {
		t.Fatalf("scale: %s", r)
	}
	sc := bufio.NewScanner(res.Body)
	seen := false
	for !seen && sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && strings.Contains(str(m, "text"), `"msg":"listening"`) && str(m, "instance") == "process-transaction-2" {
			seen = true
		}
	}
	if !seen {
		t.Errorf("the followed stream ended without the new replica's line: %v", sc.Err())
	}

	// /system/info, /system/namespaces, /healthz.
	r := e.sys(http.MethodGet, "/system/info", nil)
	var info struct {
		Provider struct {
			Name          string `json:"provider"`
			Orchestration string `json:"orchestration"`
		} `json:"provider"`
		Arch string `json:"arch"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.raw, &info) != nil || info.Provider.Name == "" || info.Provider.Orchestration == "" || info.Arch == "" {
		t.Errorf("GET /system/info: %s", r)
	}
	if r := e.sys(http.MethodGet, "/system/namespaces", nil); r.status != http.StatusOK || strings.TrimSpace(string(r.raw)) != `["openfaas-fn"]` {
		t.Errorf("GET /system/namespaces: %s", r)
	}
	if r := e.req(http.MethodGet, "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("GET /healthz: %s", r)
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// A function labelled com.openfaas.scale.zero=true stops once idle for its
// zero-duration; the next call waits while it starts again (a cold start)
// and is answered.
func TestScaleToZeroAndWake(t *testing.T) {
	e := startStack(t, stackOptions{})
	base, status := e.functionStatus("process-transaction")
	if status != http.StatusOK {
		t.Fatalf("GET /system/function/process-transaction: %d", status)
	}
	labels := map[string]string{"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "2s"}
	if r := e.sys(http.MethodPost, "/system/functions", map[string]any{"service": "pt-zero", "image": base.Image,
		"envVars": base.EnvVars, "secrets": base.Secrets, "labels": map[string]string{"com.openfaas.scale.zero-duration": "soon", "com.openfaas.scale.zero": "true"}}); r.status != http.StatusBadRequest {
		t.Errorf("an unreadable zero-duration: %s, want 400", r)
	}
	if r := e.sys(http.MethodPost, "/system/functions", map[string]any{"service": "pt-zero", "image": base.Image,
		"envVars": base.EnvVars, "secrets": base.Secrets, "labels": labels}); r.status != http.StatusAccepted {
		t.Fatalf("POST /system/functions: %s", r)
	}
	e.eventually("pt-zero scaled to zero when idle", 60*time.Second, func() bool {
		st, _ := e.functionStatus("pt-zero")
		return st.Replicas == 0 && len(e.processesOf("pt-zero")) == 0
	})
	for round := 1; round <= 2; round++ {
		start := time.Now()
		if r := e.req(http.MethodGet, "/function/pt-zero/_/ready", nil); r.status != http.StatusOK {
			t.Fatalf("a call to pt-zero at zero: %s", r)
		}
		t.Logf("cold start %d: first response after %s", round, time.Since(start).Round(time.Millisecond))
		if st, _ := e.functionStatus("pt-zero"); st.Replicas != 1 {
			t.Errorf("after the wake: %d replicas, want 1", st.Replicas)
		}
		e.eventually("pt-zero idle again", 60*time.Second, func() bool {
			st, _ := e.functionStatus("pt-zero")
			return st.Replicas == 0 && len(e.processesOf("pt-zero")) == 0
		})
	}
	// Scaled to 0 by hand, a function without the label stays there:
	// its calls wait, then 503 (not run here: it takes the hold time).
}
