package payments

import (
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

// ValidToken says whether s has the shape of a gateway token (pm_…): 3 to
// 255 ASCII letters, digits and underscores, what ^[A-Za-z0-9_]{3,255}$
// matches (TestValidTokenIsTheRegexp). A loop, not that regexp: its
// compiled program (the class 255 times) was built in package init at every
// start of capture-payment, 200 KB in 2,840 allocations and the slowest
// init of the binary (GODEBUG=inittrace=1; issue 20).
func ValidToken(s string) bool {
	if len(s) < 3 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Str is *p, or "" for nil.
func Str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
