package platform_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/server"
)

// A route table served by Mux maps the function's own codes by its status
// table, and the server still sees the mux: an unknown path or a wrong
// method is a problem document, not the mux's plain text, and requests
// are labelled by their route. (Installing the table around the whole mux
// hid it from the server.)
func TestMuxMapsTheFunctionsCodesAndKeepsProblemsForUnknownRoutes(t *testing.T) {
	d, _, _ := limited(t, "off", "")
	const teapot apperr.Code = "demo_teapot"
	statuses := problem.Statuses{teapot: {Status: http.StatusTeapot, Title: "A teapot"}}
	mux := d.Mux([]platform.Route{{Pattern: "GET /tea", Access: platform.Public, Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			problem.Write(w, r, apperr.New(teapot, "short and stout"))
		})}}, statuses)
	srv := httptest.NewServer(server.New(server.Config{}, server.App{Name: "demo", Handler: mux}).Handler())
	defer srv.Close()

	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/tea", http.StatusTeapot, string(teapot)},
		{"GET", "/coffee", http.StatusNotFound, string(problem.NotFound)},
		{"DELETE", "/tea", http.StatusMethodNotAllowed, string(problem.MethodNotAllowed)},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		err = json.NewDecoder(res.Body).Decode(&doc)
		res.Body.Close()
		if res.StatusCode != c.status || err != nil || doc["code"] != c.code || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d %s %v (%v), want %d with code %s", c.method, c.path, res.StatusCode, res.Header.Get("Content-Type"), doc, err, c.status, c.code)
		}
	}
}
