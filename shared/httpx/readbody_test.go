package httpx

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// ReadBody returns the body whatever its declared length says: exact,
// absent, shorter or longer than the bytes, over the server's limit, or
// read a few bytes at a time.
func TestReadBodyReadsTheWholeBodyWhateverItDeclares(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10_000)
	for _, c := range []struct {
		name     string
		declared int64
		reader   func() io.Reader
	}{
		{"declared", int64(len(body)), func() io.Reader { return bytes.NewReader(body) }},
		{"undeclared", -1, func() io.Reader { return bytes.NewReader(body) }},
		{"declared short", 10, func() io.Reader { return bytes.NewReader(body) }},
		{"declared long", int64(len(body)) + 500, func() io.Reader { return bytes.NewReader(body) }},
		{"declared over presizeMax", presizeMax + 1, func() io.Reader { return bytes.NewReader(body) }},
		{"one byte at a time", int64(len(body)), func() io.Reader { return iotest.OneByteReader(bytes.NewReader(body)) }},
		{"empty", 0, func() io.Reader { return strings.NewReader("") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", c.reader())
			r.ContentLength = c.declared
			got, err := ReadBody(r)
			want := body
			if c.name == "empty" {
				want = nil
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ReadBody = %d bytes, %v; want %d bytes", len(got), err, len(want))
			}
		})
	}
}

// The server's limit still decides: a body over it is a MaxBytesError
// (a 413), whether or not it declared its length.
func TestReadBodyKeepsTheServersLimit(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 5000)
	for _, declared := range []int64{5000, -1} {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		r.ContentLength = declared
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 4096)
		_, err := ReadBody(r)
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			t.Errorf("declared %d: err = %v; want a MaxBytesError", declared, err)
		}
	}
}

// A body that declares its length is read into one allocation: the
// reason ReadBody exists (io.ReadAll makes about ten for 100 kB).
func TestReadBodyAllocatesOnceForADeclaredLength(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 10_000)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	rd := bytes.NewReader(body)
	r.Body = io.NopCloser(rd)
	r.ContentLength = int64(len(body))
	allocs := testing.AllocsPerRun(20, func() {
		rd.Reset(body)
		if _, err := ReadBody(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("ReadBody made %.0f allocations for a declared body; want 1", allocs)
	}
}
