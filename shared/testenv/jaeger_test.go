package testenv

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real Jaeger serves the UI assets JaegerConfig names (make observe's
// bin/jaeger-ui), filling in its version as it does for jaeger-ui's
// index.html, and its query API beside them.
func TestJaegerServesTheUIAssetsItIsGiven(t *testing.T) {
	assets := t.TempDir()
	index := `<!doctype html><html><head><base href="/" data-inject-target="BASE_URL" />` +
		`<script>const JAEGER_VERSION = DEFAULT_VERSION;</script></head><body>billfn-test-ui</body></html>`
	if err := os.WriteFile(filepath.Join(assets, "index.html"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(assets, "static"), 0o755)
	if err := os.WriteFile(filepath.Join(assets, "static", "app.js"), []byte("billfn-test-script"), 0o644); err != nil {
		t.Fatal(err)
	}
	j := StartJaegerUI(t, assets)
	get := func(path string) string {
		t.Helper()
		res, err := http.Get(j.Query + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %.300s", path, res.Status, b)
		}
		return string(b)
	}
	page := get("/search") // a UI route: the index page
	if !strings.Contains(page, "billfn-test-ui") || strings.Contains(page, "DEFAULT_VERSION") || !strings.Contains(page, `JAEGER_VERSION = {`) {
		t.Errorf("GET /search is not the given index.html with Jaeger's version filled in:\n%.600s", page)
	}
	if s := get("/static/app.js"); s != "billfn-test-script" {
		t.Errorf("GET /static/app.js = %q", s)
	}
	if s := get("/api/services"); !strings.Contains(s, `"data"`) {
		t.Errorf("GET /api/services = %.300s", s)
	}
}
