package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// upstream is a lean HTTP/1.1 client to one function: a LIFO pool of
// keep-alive connections used synchronously by the calling goroutine. On two
// cores the standard Transport's two helper goroutines per connection (and
// the hand-offs between them for every call) are a measurable share of the
// gateway's CPU; this path skips them. It serves requests whose body is
// known and small (buffered, so a call can be replayed on a fresh
// connection); anything else goes through http.Transport.
type upstream struct {
	addr       string
	dialer     *net.Dialer
	maxIdle    int
	idleFor    time.Duration // an idle connection older than this is not reused
	headerWait time.Duration // time allowed for the response headers
	generation func() uint64 // changes when the function's process changes

	mu   sync.Mutex
	idle []*upConn
	gen  uint64
}

type upConn struct {
	c    net.Conn
	br   *bufio.Reader
	head []byte // the request head being written (reused: one per connection)
	used time.Time
}

// maxBuffered is the largest request body the lean path takes.
const maxBuffered = 64 << 10

func (u *upstream) get(ctx context.Context) (*upConn, bool, error) {
	u.mu.Lock()
	if u.generation != nil {
		if g := u.generation(); g != u.gen {
			// The process changed: its connections died with the old one.
			u.closeIdleLocked()
			u.gen = g
		}
	}
	now := time.Now()
	for len(u.idle) > 0 {
		pc := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		if now.Sub(pc.used) < u.idleFor {
			u.mu.Unlock()
			return pc, true, nil
		}
		pc.c.Close()
	}
	u.mu.Unlock()
	c, err := u.dialer.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, false, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 16<<10), head: make([]byte, 0, 1<<10)}, false, nil
}

func (u *upstream) put(pc *upConn) {
	pc.used = time.Now()
	u.mu.Lock()
	if len(u.idle) < u.maxIdle {
		u.idle = append(u.idle, pc)
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	pc.c.Close()
}

func (u *upstream) closeIdleLocked() {
	for _, pc := range u.idle {
		pc.c.Close()
	}
	u.idle = u.idle[:0]
}

func (u *upstream) closeIdle() {
	u.mu.Lock()
	u.closeIdleLocked()
	u.mu.Unlock()
}

// replayable reports a request that may be sent again after its
// connection failed before answering (a stale pooled connection, a replica
// that died with it in flight): a safe method, or a write whose
// Idempotency-Key the functions answer with the stored result. Unlike
// net/http it does not count an empty Idempotency-Key (the middleware
// takes a request with one as keyless) nor X-Idempotency-Key (no function
// reads it): sent again, such a write would take effect twice.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// staleConn reports an error that a connection the peer had already
// closed produces on its first use.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// roundTrip sends req (its body is body) and returns the response, whose
// Body gives the connection back when read to the end or closed.
func (u *upstream) roundTrip(req *http.Request, body []byte) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := u.get(req.Context())
		if err != nil {
			return nil, err
		}
		res, err := u.exchange(pc, req, body)
		if err == nil {
			return res, nil
		}
		pc.c.Close()
		if reused && attempt == 0 && staleConn(err) && replayable(req) && req.Context().Err() == nil {
			u.closeIdle() // the others are likely as dead as this one
			continue
		}
		return nil, err
	}
}

// smallRequest is the size up to which a request's head and body are
// copied into one buffer and written with one write; a larger body goes
// out beside its head in one writev, uncopied.
const smallRequest = 16 << 10

func (u *upstream) exchange(pc *upConn, req *http.Request, body []byte) (*http.Response, error) {
	pc.head = appendRequestHead(pc.head[:0], req, len(body))
	var err error
	if len(pc.head)+len(body) <= smallRequest {
		pc.head = append(pc.head, body...)
		_, err = pc.c.Write(pc.head)
	} else {
		bufs := net.Buffers{pc.head, body}
		_, err = bufs.WriteTo(pc.c)
	}
	if cap(pc.head) > 4*smallRequest {
		pc.head = nil // do not keep a large body's buffer per idle connection
	}
	if err != nil {
		return nil, err
	}
	if u.headerWait > 0 {
		_ = pc.c.SetReadDeadline(time.Now().Add(u.headerWait))
	}
	var res *http.Response
	for {
		var err error
		res, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx informational: the final response follows.
	}
	if u.headerWait > 0 {
		_ = pc.c.SetReadDeadline(time.Time{})
	}
	res.Body = &upBody{rc: res.Body, u: u, pc: pc, reuse: !res.Close,
		empty: req.Method == http.MethodHead || res.ContentLength == 0 || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified}
	return res, nil
}

// appendRequestHead appends to b the HTTP/1.1 head of req with a body of n
// bytes: what req.Write writes before the body for the requests the lean
// path sends (a known length, no trailers, no Transfer-Encoding, User-Agent
// set, empty to send none), without its costs per request (sorting the
// header keys, a replacer over every value, the writes through a
// bufio.Writer). Header order is the map's; as req.Write does, a CR or LF in
// a value becomes a space and a name that is not a token is left out, so no
// header can end the head or add another.
func appendRequestHead(b []byte, req *http.Request, n int) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		b = appendHeader(b, "User-Agent", ua[0])
	}
	switch {
	case n > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, "\r\n"...)
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // as req.Write: its own above, or none
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // as req.Write: a name that is not a token is dropped
		}
		for _, v := range vv {
			b = appendHeader(b, k, v)
		}
	}
	return append(b, "\r\n"...)
}

func appendHeader(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	start := len(b)
	b = append(b, textproto.TrimString(v)...)
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return append(b, "\r\n"...)
}

// upBody returns the connection to the pool once the body was read to its
// end, and closes it when the body is abandoned.
type upBody struct {
	rc    io.ReadCloser
	u     *upstream
	pc    *upConn
	reuse bool
	empty bool
	done  bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		b.release(b.empty)
	}
	return nil
}

func (b *upBody) release(complete bool) {
	b.done = true
	if complete && b.reuse {
		b.u.put(b.pc)
		return
	}
	b.pc.c.Close()
}
