// Package readthrough asks the function that owns a resource for it, with
// a service token, when a read model has not learnt it from events yet
// (an invoice finalized a moment ago, an account created before the
// reading function existed).
//
// It is the HTTP half of a read-through: the caller stores the answer in
// its read model, so a resource is asked for once. A 404 is ErrUnknown
// (nobody knows it: the caller answers as for a missing resource); any
// other failure is an error the caller turns into a retryable 503, never a
// guess.
package readthrough

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/telemetry"
)

// ErrUnknown is returned for a resource the owner does not know (404).
var ErrUnknown = errors.New("readthrough: no such resource")

// Client reads resources from one function.
type Client struct {
	BaseURL string        // e.g. http://gateway.openfaas:8080/function/generate-invoice
	Token   *config.Live  // a service-role JWT, followed when its secret file is rotated
	HTTP    *http.Client  // nil: http.DefaultClient
	Timeout time.Duration // per call; 0: 5 s
}

// New returns a client of baseURL with the service token, or nil when
// either is empty (then only events fill the read model). The token is the
// service-token secret followed (config.Follow): a rotated token is sent
// without a restart.
func New(baseURL, token string) *Client {
	if baseURL == "" || token == "" {
		return nil
	}
	return &Client{BaseURL: baseURL, Token: config.Follow(ServiceTokenSecret, token)}
}

// ServiceTokenSecret is the secret holding a function's service-role JWT.
const ServiceTokenSecret = "service-token"

// Get reads GET {BaseURL}/{collection}/{id} into dst (JSON, at most 1 MiB).
func (c *Client) Get(ctx context.Context, collection, id string, dst any) error {
	t := c.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	path := "/" + strings.Trim(collection, "/") + "/" + url.PathEscape(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token.Value())
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = tracedClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return ErrUnknown
	default:
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(dst); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// tracedClient is http.DefaultClient whose calls are spans of the caller's
// trace and carry its traceparent to the function read.
var tracedClient = &http.Client{Transport: telemetry.Transport(nil)}
