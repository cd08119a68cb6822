package invoicing

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
)

// Fixed-point scales. Quantities and percentages are exact decimals held as
// integers; nothing here is ever a float.
const (
	// QuantityScale: quantities have at most 6 decimals (1.5 = 1_500_000).
	QuantityScale    = 1_000_000
	quantityDecimals = 6
	// PercentScale: percentages have at most 4 decimals (8.875% = 88_750),
	// so a rate as a fraction is Percent / RateDen.
	PercentScale    = 10_000
	PercentDecimals = 4
	// RateDen turns a Percent into a fraction: 100% = 1_000_000.
	RateDen = 100 * PercentScale
)

// Quantity is a line quantity in millionths (QuantityScale).
type Quantity int64

// Percent is a percentage in ten-thousandths of a percent (PercentScale).
type Percent int64

var errDecimal = errors.New("not a plain decimal")

// parseScaled reads a plain decimal ("12", "0.25", "-3.5") into an integer
// scaled by 10^decimals. It never rounds: more decimals than allowed is an
// error, and so are exponents, empty parts and values beyond int64.
func parseScaled(s string, decimals int) (int64, error) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	ip, fp, dot := strings.Cut(s, ".")
	if ip == "" || (dot && fp == "") || !allDigits(ip) || !allDigits(fp) {
		return 0, errDecimal
	}
	fp = strings.TrimRight(fp, "0")
	if len(fp) > decimals {
		return 0, errPrecision
	}
	var v int64
	for _, part := range []string{ip, fp + strings.Repeat("0", decimals-len(fp))} {
		for i := 0; i < len(part); i++ {
			d := int64(part[i] - '0')
			if v > (math.MaxInt64-d)/10 {
				return 0, errTooLarge
			}
			v = v*10 + d
		}
	}
	if neg {
		v = -v
	}
	return v, nil
}

var (
	errPrecision = errors.New("too many decimals")
	errTooLarge  = errors.New("too large")
)

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// formatScaled writes v/10^decimals without trailing zeros ("2", "0.25").
func formatScaled(v int64, decimals int) string {
	neg := v < 0
	var mag uint64
	if neg {
		mag = uint64(-v)
	} else {
		mag = uint64(v)
	}
	s := strconv.FormatUint(mag, 10)
	if len(s) <= decimals {
		s = strings.Repeat("0", decimals-len(s)+1) + s
	}
	ip, fp := s[:len(s)-decimals], strings.TrimRight(s[len(s)-decimals:], "0")
	if fp != "" {
		ip += "." + fp
	}
	if neg {
		return "-" + ip
	}
	return ip
}

// String formats the quantity ("3", "0.25").
func (q Quantity) String() string { return formatScaled(int64(q), quantityDecimals) }

// String formats the percentage without a sign ("20", "8.875").
func (p Percent) String() string { return formatScaled(int64(p), PercentDecimals) }

// MarshalJSON writes the quantity as a JSON string, so no client reads it
// as a float.
func (q Quantity) MarshalJSON() ([]byte, error) { return []byte(`"` + q.String() + `"`), nil }

// MarshalJSON writes the percentage as a JSON string.
func (p Percent) MarshalJSON() ([]byte, error) { return []byte(`"` + p.String() + `"`), nil }

// UnmarshalJSON reads what MarshalJSON wrote (stored snapshots).
func (q *Quantity) UnmarshalJSON(b []byte) error {
	v, err := parseJSONDecimal(b, quantityDecimals)
	*q = Quantity(v)
	return err
}

// UnmarshalJSON reads what MarshalJSON wrote (stored snapshots).
func (p *Percent) UnmarshalJSON(b []byte) error {
	v, err := parseJSONDecimal(b, PercentDecimals)
	*p = Percent(v)
	return err
}

func parseJSONDecimal(b []byte, decimals int) (int64, error) {
	var d DecimalText
	if err := d.UnmarshalJSON(b); err != nil {
		return 0, err
	}
	return parseScaled(d.s, decimals)
}

// DecimalText keeps a request's decimal as written (a JSON number literal or
// a string), so that validation, not decoding, reports a bad value with the
// field's pointer. JSON numbers never go through float64.
type DecimalText struct {
	s     string
	Set   bool // present and not null
	wrong bool // present but neither a number nor a string
}

// UnmarshalJSON never fails on a well-formed JSON value.
func (d *DecimalText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*d = DecimalText{}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = DecimalText{s: strings.TrimSpace(s), Set: true}
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*d = DecimalText{s: string(b), Set: true}
	default:
		*d = DecimalText{Set: true, wrong: true}
	}
	return nil
}

// MarshalJSON writes the decimal back as a JSON string (the async path
// forwards request bodies as event data).
func (d DecimalText) MarshalJSON() ([]byte, error) {
	if !d.Set || d.wrong {
		return []byte("null"), nil
	}
	return json.Marshal(d.s)
}

// Parse returns the scaled value, or a human detail for a validation error.
func (d DecimalText) Parse(decimals int) (int64, string) {
	if d.wrong {
		return 0, "must be a decimal number or a string holding one"
	}
	v, err := parseScaled(d.s, decimals)
	switch {
	case errors.Is(err, errPrecision):
		return 0, "must have at most " + strconv.Itoa(decimals) + " decimal places"
	case errors.Is(err, errTooLarge):
		return 0, "is too large"
	case err != nil:
		return 0, "must be a plain decimal such as \"2\" or \"0.25\" (no exponent)"
	}
	return v, ""
}
