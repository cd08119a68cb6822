package outgoing

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/egress"
)

// A merchant may put a credential in its endpoint's query
// (https://hooks.example.com/billfn?token=…): the notice of a disabled
// endpoint travels on Kafka, is e-mailed and logged, and a failed
// attempt's error (egress.ErrorText, as the sender records it) is kept
// with the delivery and quoted in that notice, so neither says the query.
func TestNeitherTheNoticeNorAnAttemptsErrorSaysTheEndpointsQuery(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the attempt is refused
	url := "http://" + addr + "/billfn/hooks?token=s3cret-query&x=1"
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	text := egress.ErrorText(err)
	if strings.Contains(text, "s3cret") || !strings.Contains(text, "http://"+addr+"/billfn/hooks") || !strings.Contains(text, "refused") {
		t.Errorf("ErrorText = %q; want the URL without its query, and the cause", text)
	}
	e := &Endpoint{ID: "we_1", URL: url}
	d := &Delivery{ID: "msg_1", EventType: "billfn.invoice.paid", Attempts: 9, CreatedAt: time.Now(), Error: &text}
	n := Notice(e, d, "delivery msg_1 failed 9 attempts, the last with "+text, time.Now())
	if n.URL != "http://"+addr+"/billfn/hooks" {
		t.Errorf("notice URL = %q; want the endpoint's URL without its query", n.URL)
	}
	for _, s := range []string{n.URL, n.Reason, *n.LastError} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("the notice says the query: %q", s)
		}
	}
}
