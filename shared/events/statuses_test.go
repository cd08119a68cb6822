package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
)

const (
	codeRefundRefused apperr.Code = "test_refund_refused" // a rule said no: retrying cannot help
	codeRefundBusy    apperr.Code = "test_refund_busy"    // a 409: the trigger may retry
)

// A handler's domain error is classified by the function's own
// problem.Statuses, which the receiver finds in the request's context: a
// 4xx code is parked, a 409 and an unknown code are retried.
func TestHandlerErrorsAreClassifiedByTheFunctionsTable(t *testing.T) {
	g := newRig(t, false)
	g.rc.On(events.TypeRefundSucceeded, func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		var r events.Refund
		if err := events.Decode(ev, &r); err != nil {
			return err
		}
		return apperr.New(apperr.Code(r.Reason), "refund %s", r.RefundID)
	})
	statuses := problem.Statuses{
		codeRefundRefused: {Status: http.StatusUnprocessableEntity, Title: "Refund refused"},
		codeRefundBusy:    {Status: http.StatusConflict, Title: "Refund busy"},
	}
	withTable := httptest.NewServer(statuses.Middleware(g.rc))
	t.Cleanup(withTable.Close)
	withoutTable := httptest.NewServer(g.rc)
	t.Cleanup(withoutTable.Close)

	send := func(url string, code apperr.Code) (int, events.Result) {
		t.Helper()
		ev, err := events.New(context.Background(), "capture-payment", events.TypeRefundSucceeded, uuid.NewString(),
			events.Refund{RefundID: uuid.NewString(), Reason: string(code)})
		if err != nil {
			t.Fatal(err)
		}
		body := structured(t, ev)
		req, _ := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(body))
		req.Header = g.signed(body, http.Header{"Content-Type": {events.ContentTypeStructured}})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var res events.Result
		_ = json.NewDecoder(resp.Body).Decode(&res)
		return resp.StatusCode, res
	}
	if code, res := send(withTable.URL, codeRefundRefused); code != 200 || res.Parked != 1 {
		t.Fatalf("a 422 domain code: %d %+v, want parked", code, res)
	}
	if code, _ := send(withTable.URL, codeRefundBusy); code < 500 {
		t.Fatalf("a 409 domain code: %d, want a retry (5xx)", code)
	}
	// Without the table the code is unknown: an internal error, retried,
	// never parked on a guess.
	if code, res := send(withoutTable.URL, codeRefundRefused); code < 500 || res.Parked != 0 {
		t.Fatalf("without the table: %d %+v, want a retry", code, res)
	}
	// The shared codes need no table.
	if !events.IsPermanent(apperr.New(apperr.ValidationFailed, "bad")) || events.IsPermanent(apperr.New(apperr.Conflict, "busy")) {
		t.Fatal("IsPermanent misclassifies a shared code")
	}
	ctx := problem.WithStatuses(context.Background(), statuses)
	if !events.IsPermanentIn(ctx, apperr.New(codeRefundRefused, "x")) || events.IsPermanent(apperr.New(codeRefundRefused, "x")) {
		t.Fatal("IsPermanentIn does not use the table in ctx")
	}
}
