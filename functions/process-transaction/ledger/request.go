package ledger

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/pan"
)

// TransferRequest is the body of POST /transfers and the request in
// billfn.transaction.requested (events.TransferRequest, with its rules).
type TransferRequest events.TransferRequest

var (
	numberRe = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{3,33}$`)
	systemRe = regexp.MustCompile(`^SYS-(EXTERNAL|CLEARING|REVENUE)-([A-Z]{3})$`)
)

// Limits of a transfer's free-text fields and metadata.
const (
	MaxDescription = 500
	MaxReference   = 200
	MaxMetadata    = 8 << 10
)

// Validate checks the request's shape (path prefixes field pointers, e.g.
// "transfers/3/"), and that a caller who is not privileged claims no kind
// of transfer that billfn's own functions make (events.TransferKinds: a
// consumer takes it for a fact about a payment). Rules that need no account — a non-positive amount, the
// same account on both sides — are reported as their rejection codes.
func (r *TransferRequest) Validate(path string, now time.Time, caller Caller) error {
	// A card number in a free-text field is refused first, so no other
	// message quotes it; an event's request is checked here too.
	var c pan.Checker
	c.Texts(strings.TrimSuffix(path, "/"), "description", r.Description, "reference_id", r.ReferenceID,
		"from_account_number", r.FromAccountNumber, "to_account_number", r.ToAccountNumber)
	c.JSON(path+"metadata", r.Metadata)
	if err := c.Err(); err != nil {
		return err
	}
	var v apperr.Validator
	v.Add(accountRef(path+"from_account", r.FromAccountID, r.FromAccountNumber)...)
	v.Add(accountRef(path+"to_account", r.ToAccountID, r.ToAccountNumber)...)
	cur, err := money.ParseCurrency(r.Currency)
	if err != nil {
		v.Add(apperr.Field(path+"currency", "must be an ISO 4217 currency code such as USD"))
	} else {
		r.Currency = string(cur)
	}
	v.Check(utf8.RuneCountInString(r.Description) <= MaxDescription, path+"description", "must be at most 500 characters")
	v.Check(utf8.RuneCountInString(r.ReferenceID) <= MaxReference, path+"reference_id", "must be at most 200 characters")
	if len(r.Metadata) > 0 && !bytes.Equal(r.Metadata, []byte("null")) {
		trimmed := bytes.TrimSpace(r.Metadata)
		v.Check(len(trimmed) > 0 && trimmed[0] == '{', path+"metadata", "must be a JSON object")
		v.Check(len(r.Metadata) <= MaxMetadata, path+"metadata", "must be at most 8 KiB")
		if why := Unstorable(r.Metadata); why != "" {
			v.Add(apperr.Field(path+"metadata", why))
		}
	} else {
		r.Metadata = nil
	}
	if !caller.Privileged() && len(r.Metadata) > 0 {
		v.Check(!metadataKind(r.Metadata, events.TransferKinds...), path+"metadata/kind",
			"is a kind of transfer only billfn's own functions make ("+strings.Join(events.TransferKinds, ", ")+")")
	}
	if r.ExpiresAt != nil {
		v.Check(r.Pending, path+"expires_at", "only a hold (\"pending\": true) can expire")
		v.Check(r.ExpiresAt.After(now), path+"expires_at", "must be in the future")
	}
	if err := v.Err(); err != nil {
		return err
	}
	if r.Amount <= 0 {
		return ErrAmountInvalid(path + "amount")
	}
	// Ids are case-insensitive; accounts are looked up by their canonical,
	// lower-case id (accountRef let only ids through).
	r.FromAccountID, _ = ids.Canonical(r.FromAccountID)
	r.ToAccountID, _ = ids.Canonical(r.ToAccountID)
	if (r.FromAccountID != "" && r.FromAccountID == r.ToAccountID) ||
		(r.FromAccountNumber != "" && r.FromAccountNumber == r.ToAccountNumber) {
		return errSameAccount()
	}
	return nil
}

func accountRef(name, id, number string) []apperr.FieldError {
	switch {
	case id == "" && number == "":
		return []apperr.FieldError{apperr.Field(name+"_id", "required (or "+name+"_number)")}
	case id != "" && number != "":
		return []apperr.FieldError{apperr.Field(name+"_number", "give either "+name+"_id or "+name+"_number, not both")}
	case id != "":
		if !ids.Valid(id) {
			return []apperr.FieldError{apperr.Field(name+"_id", "must be a UUID")}
		}
	case !ValidNumber(number):
		return []apperr.FieldError{apperr.Field(name+"_number", "must be 4-34 characters of A-Z, 0-9 and '-'")}
	}
	return nil
}

// ValidNumber reports whether n is a well-formed account number.
func ValidNumber(n string) bool { return numberRe.MatchString(n) }

// IsSystemNumber reports whether n names a system account
// (SYS-<ROLE>-<CUR>), and its currency.
func IsSystemNumber(n string) (currency string, ok bool) {
	m := systemRe.FindStringSubmatch(n)
	if m == nil {
		return "", false
	}
	if _, err := money.ParseCurrency(m[2]); err != nil {
		return "", false
	}
	return m[2], true
}

// crockford is Crockford's base32 alphabet: no I, L, O, U to misread.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewAccountNumber makes a readable number like ACC-7F3K-9Q2M (40 random bits).
func NewAccountNumber() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	out := []byte("ACC-XXXX-XXXX")
	j := 4
	for i := 0; i < 8; i++ {
		if j == 8 {
			j++
		}
		out[j] = crockford[b[i]&31]
		j++
	}
	return string(out)
}

// ClaimsBillfnKind reports whether the request's metadata names one of
// events.TransferKinds as its kind, in any spelling of the member's name
// (metadataKind): a fact about a payment, which only its owner states.
func (r *TransferRequest) ClaimsBillfnKind() bool {
	return len(r.Metadata) > 0 && metadataKind(r.Metadata, events.TransferKinds...)
}

// metadataKind reports whether metadata (a JSON object) names one of
// kinds (events.TransferKinds: a billfn kind) as its "kind". Every
// top-level member whose name is "kind" in any case (encoding/json
// matches field names that way, Unicode folding included: "KIND",
// "\u212aind") is looked at, duplicates too:
// a consumer reads the member named exactly "kind" (aggregate-report's
// reconciliation), and a struct decoded here saw only the last of them,
// so {"kind":"payment_capture","KIND":"note"} passed as "note" and was
// posted as a capture.
func metadataKind(metadata []byte, kinds ...string) bool {
	dec := json.NewDecoder(bytes.NewReader(metadata))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false // not an object: Validate says so
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return false
		}
		var k string
		if name, _ := t.(string); strings.EqualFold(name, "kind") && json.Unmarshal(v, &k) == nil &&
			slices.Contains(kinds, k) {
			return true
		}
	}
	return false
}
