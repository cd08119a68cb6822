// Package mailpit finds (or builds) Mailpit, the SMTP server with a web
// UI and a REST API that catches every email the local stack and the tests
// send, and reads what arrived through that API.
//
// Mailpit is a program, not a library of billfn: it is built outside
// billfn's go.mod from its module's source at Version, web UI included
// (build.go: npm builds the UI bundle the module does not carry, then go
// build embeds it).
package mailpit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Version is the Mailpit billfn runs.
const Version = "v1.33.1"

// Args are the arguments that run Mailpit with SMTP on smtpAddr (any
// credentials accepted, no TLS: it is loopback only), its UI and API on
// uiAddr, and its messages in database (a file, so a restart keeps them).
func Args(smtpAddr, uiAddr, database string) []string {
	return []string{"--smtp", smtpAddr, "--listen", uiAddr, "--database", database,
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--disable-version-check", "--quiet",
		// keeps the newest 5000 (the UI still shows every email of a session)
		"--max", "5000",
		// Mailpit stands in for an SMTP relay on loopback: a reverse DNS
		// lookup of each connecting client (127.0.0.1) tells nobody anything
		"--smtp-disable-rdns",
		// its raw messages stored as they came, not zstd-compressed: a few
		// KB each, at most --max of them; compressing them was 6 % of
		// Mailpit's CPU per invoice email (perf, issue 18)
		"--compression", "0"}
}

// Client reads Mailpit's REST API (https://mailpit.axllent.org/docs/api-v1/).
type Client struct {
	Base string // http://127.0.0.1:8025
	HTTP *http.Client
}

func (c Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// Address is a sender or recipient.
type Address struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

// Summary is a message in a list.
type Summary struct {
	ID          string    `json:"ID"`
	MessageID   string    `json:"MessageID"`
	From        Address   `json:"From"`
	To          []Address `json:"To"`
	Subject     string    `json:"Subject"`
	Created     time.Time `json:"Created"`
	Size        int       `json:"Size"`
	Attachments int       `json:"Attachments"`
	Snippet     string    `json:"Snippet"`
}

// Attachment is a part of a message.
type Attachment struct {
	PartID      string `json:"PartID"`
	FileName    string `json:"FileName"`
	ContentType string `json:"ContentType"`
	Size        int    `json:"Size"`
}

// Message is one message in full.
type Message struct {
	ID          string       `json:"ID"`
	MessageID   string       `json:"MessageID"`
	From        Address      `json:"From"`
	To          []Address    `json:"To"`
	Subject     string       `json:"Subject"`
	Text        string       `json:"Text"`
	HTML        string       `json:"HTML"`
	Attachments []Attachment `json:"Attachments"`
}

func (c Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit GET %s: %s: %.200s", path, resp.Status, body)
	}
	if b, ok := v.(*[]byte); ok {
		*b = body
		return nil
	}
	return json.Unmarshal(body, v)
}

// Messages lists the newest messages (up to 1000), newest first; query,
// when set, is Mailpit's search ("to:ada@example.com subject:INV-…").
func (c Client) Messages(ctx context.Context, query string) ([]Summary, error) {
	var page struct {
		Messages []Summary `json:"messages"`
	}
	path := "/api/v1/messages?limit=1000"
	if query != "" {
		path = "/api/v1/search?limit=1000&query=" + url.QueryEscape(query)
	}
	err := c.get(ctx, path, &page)
	return page.Messages, err
}

// Count is how many messages Mailpit holds, or, with query set, how many
// its search finds (messages_count of a page of one message: the list's is
// a COUNT(*); a search reads every match whatever the page's size).
func (c Client) Count(ctx context.Context, query string) (int, error) {
	var page struct {
		Count int `json:"messages_count"`
	}
	path := "/api/v1/messages?limit=1"
	if query != "" {
		path = "/api/v1/search?limit=1&query=" + url.QueryEscape(query)
	}
	err := c.get(ctx, path, &page)
	return page.Count, err
}

// Message reads one message: headers, text and HTML parts, attachments.
func (c Client) Message(ctx context.Context, id string) (Message, error) {
	var m Message
	err := c.get(ctx, "/api/v1/message/"+url.PathEscape(id), &m)
	return m, err
}

// Headers reads a message's headers.
func (c Client) Headers(ctx context.Context, id string) (map[string][]string, error) {
	var h map[string][]string
	err := c.get(ctx, "/api/v1/message/"+url.PathEscape(id)+"/headers", &h)
	return h, err
}

// Part reads an attachment of a message.
func (c Client) Part(ctx context.Context, id, partID string) ([]byte, error) {
	var b []byte
	err := c.get(ctx, "/api/v1/message/"+url.PathEscape(id)+"/part/"+url.PathEscape(partID), &b)
	return b, err
}

// Ready reports whether Mailpit's API answers.
func (c Client) Ready(ctx context.Context) error {
	var info map[string]any
	return c.get(ctx, "/api/v1/info", &info)
}

// Chaos makes Mailpit's SMTP answer every recipient (RCPT TO) with code
// (a 4xx or 5xx) when probability is 100, or accept them again with 0. It
// needs a Mailpit started with --enable-chaos (testenv's is).
func (c Client) Chaos(ctx context.Context, code, probability int) error {
	body, _ := json.Marshal(map[string]any{"Recipient": map[string]int{"ErrorCode": code, "Probability": probability}})
	return c.send(ctx, http.MethodPut, "/api/v1/chaos", body)
}

// DeleteAll deletes every message Mailpit holds (DELETE /api/v1/messages
// without ids).
func (c Client) DeleteAll(ctx context.Context) error {
	return c.send(ctx, http.MethodDelete, "/api/v1/messages", nil)
}

// send makes a request whose answer is 200 and nothing to read.
func (c Client) send(ctx context.Context, method, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("mailpit %s %s: %s: %.200s", method, path, resp.Status, b)
	}
	return nil
}
