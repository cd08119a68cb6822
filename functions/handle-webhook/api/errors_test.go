package api

import (
	"net/http"
	"testing"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/apperr"
)

// TestEveryWebhookCodeHasItsStatus pins the code → status table: the
// gateways read 401 as "not you", 400 as "never send this again", 503 as
// "retry later" (the domain's fuzz tests check codes, this the statuses).
func TestEveryWebhookCodeHasItsStatus(t *testing.T) {
	want := map[apperr.Code]int{
		webhooks.CodeSignatureMissing:   http.StatusUnauthorized,
		webhooks.CodeSignatureMalformed: http.StatusBadRequest,
		webhooks.CodeSignatureInvalid:   http.StatusUnauthorized,
		webhooks.CodeTimestamp:          http.StatusUnauthorized,
		webhooks.CodePayload:            http.StatusBadRequest,
		webhooks.CodeNotConfigured:      http.StatusServiceUnavailable,
	}
	if err := Statuses.Check(); err != nil {
		t.Fatal(err)
	}
	if len(Statuses) != len(want) {
		t.Errorf("the table maps %d codes, want %d", len(Statuses), len(want))
	}
	for code, status := range want {
		if got := Statuses.Status(apperr.New(code, "x")); got != status {
			t.Errorf("%s: %d, want %d", code, got, status)
		}
	}
}
