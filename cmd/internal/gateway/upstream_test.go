package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// The lean path writes a request's head itself (appendRequestHead) instead
// of through req.Write: a function must read the same request either way.
func TestTheLeanPathsRequestHeadReadsAsReqWritesDoes(t *testing.T) {
	cases := []struct {
		method, path, rawPath, query string
		header                       http.Header
		body                         string
	}{
		{"POST", "/transfers", "", "", http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer x"},
			"X-Forwarded-For": {"10.0.0.1, 127.0.0.1"}, "X-Call-Id": {"abc"}, "User-Agent": {"loadgen"}}, `{"amount":1}`},
		{"POST", "/", "", "", http.Header{"User-Agent": {""}, "Ce-Type": {"a", "b"}}, ""},
		{"PUT", "/a b/c", "/a%20b/c", "x=1&y=%2F", http.Header{"User-Agent": {""}, "Accept": {"a", "b"}}, strings.Repeat("x", 40<<10)},
		{"GET", "/_/health", "", "", http.Header{"User-Agent": {""}, "Connection-Like": {"  padded  "}}, ""},
		{"DELETE", "/things/1", "", "", http.Header{"User-Agent": {""}}, ""},
		{"PATCH", "/things/1", "", "", http.Header{"User-Agent": {""}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"},
			"Content-Length": {"999"}, "Host": {"evil"}}, "{}"},
		// A CR or LF in a value never ends the head nor adds a header.
		{"POST", "/", "", "", http.Header{"User-Agent": {""}, "X-Evil": {"a\r\nX-Injected: 1"}}, "z"},
		// Nor does a header name that is not a token: req.Write drops it.
		{"POST", "/", "", "", http.Header{"User-Agent": {""}, "X-Evil: a\r\nX-Injected": {"1"}, "Bad Name": {"x"}}, "z"},
	}
	for _, c := range cases {
		mk := func() *http.Request {
			r, err := http.NewRequest(c.method, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.URL = &url.URL{Scheme: "http", Host: "127.0.0.1:9", Path: c.path, RawPath: c.rawPath, RawQuery: c.query}
			r.Host = "127.0.0.1:9"
			r.Header = c.header.Clone()
			r.ContentLength = int64(len(c.body))
			if c.body != "" {
				r.Body = io.NopCloser(strings.NewReader(c.body))
			}
			return r
		}
		var want bytes.Buffer
		if err := mk().Write(&want); err != nil {
			t.Fatal(err)
		}
		got := append(appendRequestHead(nil, mk(), len(c.body)), c.body...)
		read := func(b []byte) (*http.Request, string) {
			r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("%s %s: %v in %q", c.method, c.path, err, b)
			}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			return r, string(body)
		}
		w, wbody := read(want.Bytes())
		g, gbody := read(got)
		if g.Method != w.Method || g.RequestURI != w.RequestURI || g.Host != w.Host || g.ContentLength != w.ContentLength ||
			!reflect.DeepEqual(g.TransferEncoding, w.TransferEncoding) || !reflect.DeepEqual(g.Header, w.Header) || gbody != wbody {
			t.Errorf("%s %s:\ngot  %q\nwant %q", c.method, c.path, got, want.Bytes())
		}
		if _, ok := g.Header["X-Injected"]; ok {
			t.Errorf("a header was injected: %q", got)
		}
	}
}
