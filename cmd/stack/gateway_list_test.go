package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/cmd/internal/stackfile"
)

// /system/functions keeps stack.yml's annotations (the cluster's cron
// schedule) and says what ticks locally: billfn.dev/local-tick-every.
func TestSystemFunctionsShowsTheLocalTickPeriod(t *testing.T) {
	st, err := stackfile.Load(filepath.Join("..", "..", "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(config{TickEvery: 3 * time.Second}, st, &bytes.Buffer{})
	s.secrets = map[string]string{basicAuthUser: "admin", basicAuthPassword: "the-gateway-password"}
	for _, f := range s.functions {
		d := deploymentOf(f.name, f.spec)
		f.dep, f.rs = &d, gateway.NewReplicaSet()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.startGateway(ln)
	defer s.gwSrv.Close()
	// OpenFaaS's /system API needs the gateway's basic-auth credentials.
	res, err := http.Get("http://" + ln.Addr().String() + "/system/functions")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic realm=") {
		t.Fatalf("without credentials: %d, WWW-Authenticate %q; want 401 with a Basic challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/system/functions", nil)
	req.SetBasicAuth("admin", "the-gateway-password")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var fns []struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.NewDecoder(res.Body).Decode(&fns); err != nil {
		t.Fatal(err)
	}
	if len(fns) != len(st.Names()) {
		t.Fatalf("%d functions listed, want %d", len(fns), len(st.Names()))
	}
	for _, f := range fns {
		want := st.Functions[f.Name].Annotations[stackfile.AnnotationSchedule]
		if want == "" {
			if _, ok := f.Annotations[AnnotationLocalTick]; ok {
				t.Errorf("%s has no schedule but a local tick", f.Name)
			}
			continue
		}
		if f.Annotations[stackfile.AnnotationSchedule] != want || f.Annotations[AnnotationLocalTick] != "3s" {
			t.Errorf("%s: schedule %q, local tick %q; want %q and 3s", f.Name, f.Annotations[stackfile.AnnotationSchedule], f.Annotations[AnnotationLocalTick], want)
		}
	}
	if _, ok := st.Functions[fns[0].Name].Annotations[AnnotationLocalTick]; ok {
		t.Error("the stack file's own annotations were changed")
	}
}
