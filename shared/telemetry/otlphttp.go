package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// otlpHTTP is the OTLP/HTTP half of a span exporter: it POSTs the spans
// otlptrace has already converted to OTLP (its own tracetransform) to a
// collector's /v1/traces as protobuf, with the retries OTLP asks for.
//
// Why not otlptracehttp: its configuration package imports
// google.golang.org/grpc (open-telemetry/opentelemetry-go#2579), and gRPC
// links golang.org/x/net/trace, whose html/template use of
// reflect.MethodByName stops the linker from dropping any unused method.
// Without it a function's binary is 3.5–25 MB smaller and more of it stays
// out of memory (docs/observability.md, "Configuration").
type otlpHTTP struct {
	url     string
	headers http.Header
	gzip    bool
	client  *http.Client
}

// exportTimeout bounds one POST; retries stop exportRetryFor after the
// first attempt. A collector that is down must never hold spans (or a
// shutdown) long: the batch processor drops what does not fit its queue.
const (
	exportTimeout  = 5 * time.Second
	exportRetryFor = 5 * time.Second
	retryFirst     = 500 * time.Millisecond
	retryMax       = 2 * time.Second
)

// newOTLPHTTP reads the standard OTLP exporter environment (the
// _TRACES_ variant of each variable wins over the general one):
//
//	OTEL_EXPORTER_OTLP_ENDPOINT            base URL; /v1/traces is appended
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     full URL, used as it is
//	OTEL_EXPORTER_OTLP_HEADERS             key=value,… (values URL-encoded)
//	OTEL_EXPORTER_OTLP_COMPRESSION         gzip or none
//	OTEL_EXPORTER_OTLP_CERTIFICATE         PEM file of the collector's CA
//	OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE  PEM files of a client certificate
//	OTEL_EXPORTER_OTLP_CLIENT_KEY          and its key (mutual TLS)
//
// endpoint, when not "", is a base URL that replaces both endpoints.
func newOTLPHTTP(endpoint string) (*otlpHTTP, error) {
	c := &otlpHTTP{headers: http.Header{}}
	switch {
	case endpoint != "":
		c.url = strings.TrimRight(endpoint, "/") + "/v1/traces"
	case os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		c.url = os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	default:
		c.url = strings.TrimRight(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/") + "/v1/traces"
	}
	if u, err := url.Parse(c.url); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q is not an http(s) URL", c.url)
	}
	if h := otlpEnv("HEADERS"); h != "" {
		for _, kv := range strings.Split(h, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %q is not key=value", kv)
			}
			if dv, err := url.PathUnescape(strings.TrimSpace(v)); err == nil {
				v = dv
			}
			c.headers.Set(k, v)
		}
	}
	c.headers.Set("Content-Type", "application/x-protobuf")
	c.headers.Set("User-Agent", "billfn OTLP exporter")
	switch z := strings.ToLower(otlpEnv("COMPRESSION")); z {
	case "", "none":
	case "gzip":
		c.gzip = true
		c.headers.Set("Content-Encoding", "gzip")
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_COMPRESSION: %q is neither gzip nor none", z)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg, err := otlpTLS(); err != nil {
		return nil, err
	} else if cfg != nil {
		tr.TLSClientConfig = cfg
	}
	c.client = &http.Client{Transport: tr, Timeout: exportTimeout}
	return c, nil
}

// otlpEnv is OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name>.
func otlpEnv(name string) string {
	if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
		return v
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_" + name)
}

// otlpTLS is the TLS configuration the environment asks for; nil when it
// asks for none (the system's roots).
func otlpTLS() (*tls.Config, error) {
	ca, cert, key := otlpEnv("CERTIFICATE"), otlpEnv("CLIENT_CERTIFICATE"), otlpEnv("CLIENT_KEY")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE: no certificate in %s", ca)
		}
	}
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/KEY: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Start does nothing: the client connects on the first export.
func (c *otlpHTTP) Start(context.Context) error { return nil }

// Stop closes idle connections.
func (c *otlpHTTP) Stop(context.Context) error {
	c.client.CloseIdleConnections()
	return nil
}

// UploadTraces sends one ExportTraceServiceRequest. Its wire form is its
// only field, resource_spans = 1, repeated: each ResourceSpans as a
// length-delimited field 1, which is what proto.Marshal of the request
// message would write.
func (c *otlpHTTP) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	var body []byte
	for _, rs := range spans {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(proto.Size(rs)))
		var err error
		if body, err = (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend(body, rs); err != nil {
			return err
		}
	}
	if c.gzip {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write(body)
		if err := w.Close(); err != nil {
			return err
		}
		body = b.Bytes()
	}
	deadline := time.Now().Add(exportRetryFor)
	wait := retryFirst
	for {
		retryAfter, err := c.post(ctx, body)
		if err == nil || retryAfter < 0 {
			return err
		}
		d := max(wait, retryAfter)
		if time.Now().Add(d).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(d):
		}
		wait = min(2*wait, retryMax)
	}
}

// post sends body once. A failure OTLP says to retry (a connection error,
// 429, 502, 503, 504) comes with retryAfter >= 0 (the collector's
// Retry-After, or 0); any other with -1.
func (c *otlpHTTP) post(ctx context.Context, body []byte) (retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return -1, err
	}
	for k, v := range c.headers {
		req.Header[k] = v
	}
	res, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, err
		}
		return 0, err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	if res.StatusCode/100 == 2 {
		return 0, nil
	}
	err = fmt.Errorf("OTLP export to %s: %s: %s", c.url, res.Status, bytes.TrimSpace(msg))
	switch res.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if s, perr := strconv.Atoi(res.Header.Get("Retry-After")); perr == nil && s > 0 {
			return time.Duration(s) * time.Second, err
		}
		return 0, err
	}
	return -1, err
}
