package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/server"
)

func post(t *testing.T, url string) (int, []byte) {
	t.Helper()
	res, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func TestPprofHandlerProfilesTheCPUBetweenStartAndStop(t *testing.T) {
	srv := httptest.NewServer(server.PprofHandler())
	defer srv.Close()
	if code, _ := post(t, srv.URL+"/debug/cpu/stop"); code != http.StatusConflict {
		t.Fatalf("stop without start: %d, want 409", code)
	}
	if code, b := post(t, srv.URL+"/debug/cpu/start"); code != http.StatusOK {
		t.Fatalf("start: %d %s", code, b)
	}
	if code, _ := post(t, srv.URL+"/debug/cpu/start"); code != http.StatusConflict {
		t.Fatalf("second start: %d, want 409", code)
	}
	code, prof := post(t, srv.URL+"/debug/cpu/stop")
	// A profile is gzip-compressed protobuf: it starts with gzip's magic.
	if code != http.StatusOK || len(prof) < 2 || prof[0] != 0x1f || prof[1] != 0x8b {
		t.Fatalf("stop: %d, %d bytes, want a gzipped profile", code, len(prof))
	}
	res, err := http.Get(srv.URL + "/debug/pprof/goroutine")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("goroutine profile: %d", res.StatusCode)
	}
	res, err = http.Get(srv.URL + "/debug/pprof/nope")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown profile: %d, want 404", res.StatusCode)
	}
}

func TestStartPprofListensOnLoopbackOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(server.PprofDirEnv, "")
	server.StartPprof("off")
	if _, err := os.Stat(filepath.Join(dir, "off.addr")); !os.IsNotExist(err) {
		t.Fatalf("without %s an address file exists: %v", server.PprofDirEnv, err)
	}
	t.Setenv(server.PprofDirEnv, dir)
	server.StartPprof("on")
	addr, err := os.ReadFile(filepath.Join(dir, "on.addr"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(addr), "127.0.0.1:") {
		t.Fatalf("listens on %s, want loopback", addr)
	}
	res, err := http.Get("http://" + string(addr) + "/debug/pprof/heap")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("heap profile: %d", res.StatusCode)
	}
}
