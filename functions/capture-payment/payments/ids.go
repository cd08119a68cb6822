package payments

import (
	"regexp"

	"github.com/google/uuid"
)

// Nullable is s as a nullable column: nil when empty.
func Nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var (
	PaymentNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/payment"))
	RefundNS  = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/refund"))
	InvoiceNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/invoice"))
)

// DerivedID is the id of the resource a request creates: the same for a
// retry with the same Idempotency-Key by the same caller.
func DerivedID(ns uuid.UUID, scope, key string) string {
	return uuid.NewSHA1(ns, []byte(scope+"\x00"+key)).String()
}

// TokenRE is the shape of a gateway token (pm_…).
var TokenRE = regexp.MustCompile(`^[A-Za-z0-9_]{3,255}$`)

// Str is *p, or "" for nil.
func Str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
