package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/problem"
)

// Statuses is handle-webhook's one table from its error codes to HTTP,
// installed on every route by Routes: a signature that is missing, wrong
// or stale is 401 (the gateway's credential), a malformed header or body
// 400, no secret configured 503 (the gateway retries until one is).
var Statuses = problem.Statuses{
	webhooks.CodeSignatureMissing:   {Status: http.StatusUnauthorized, Title: "Webhook signature missing"},
	webhooks.CodeSignatureMalformed: {Status: http.StatusBadRequest, Title: "Webhook signature header malformed"},
	webhooks.CodeSignatureInvalid:   {Status: http.StatusUnauthorized, Title: "Webhook signature invalid"},
	webhooks.CodeTimestamp:          {Status: http.StatusUnauthorized, Title: "Webhook timestamp outside tolerance"},
	webhooks.CodePayload:            {Status: http.StatusBadRequest, Title: "Webhook payload invalid"},
	webhooks.CodeNotConfigured:      {Status: http.StatusServiceUnavailable, Title: "Webhook endpoint not configured"},
}
