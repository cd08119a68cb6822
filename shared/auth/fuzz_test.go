package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// How FuzzVerify builds its token.
const (
	tokRaw      = iota // the fuzzed string as is
	tokSigned          // fuzzed header and payload JSON, signed HS256 with the key
	tokOtherKey        // the same, signed with another key
	tokNone            // the same, with an empty signature (alg none)
	tokHS512           // the same, signed HS512 with the key (a method not allowed)
	tokMutated         // a signed token with one byte replaced
	tokClaims          // a well-formed token from the fuzzed sub, role and lifetime
	tokModes
)

// FuzzVerify: whatever the string, Verify never panics and returns a
// principal only for a token whose signature is the HS256 MAC of its
// first two segments with the key, whose header says HS256, and whose
// claims are in force (exp, iss, aud), with a UUID subject (returned in
// canonical form), one of the three roles and a lifetime within the role's
// maximum. It accepts every such token
// it is given whole, and answers the same on a second call (the cache).
func FuzzVerify(f *testing.F) {
	hdr := []byte(`{"alg":"HS256","typ":"JWT"}`)
	claims := []byte(`{"sub":"8f14e45f-ceea-467a-9575-6b9d1b2ce1a7","role":"customer","iss":"billfn","aud":"billfn","exp":1740830400,"iat":1740830000}`)
	f.Add(uint8(tokSigned), "", hdr, claims, "", "", int64(0))
	f.Add(uint8(tokClaims), "", []byte{}, []byte{}, userID, "admin", int64(3600))
	f.Add(uint8(tokRaw), "eyJhbGciOiJub25lIn0.e30.", []byte{}, []byte{}, "", "", int64(0))
	f.Add(uint8(tokMutated), "", hdr, claims, "A", "", int64(40))
	key := []byte(testSecret)
	v, err := NewVerifier(Config{Alg: "HS256", Secret: testSecret, Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second, MaxLifetime: DefaultMaxLifetimes()})
	if err != nil {
		f.Fatal(err)
	}
	v.SetClock(func() time.Time { return now })
	enc := base64.RawURLEncoding.EncodeToString
	sign := func(alg func() []byte, signing string) string { return signing + "." + enc(alg()) }
	mac := func(k []byte, s string) func() []byte {
		return func() []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	}
	f.Fuzz(func(t *testing.T, mode uint8, token string, header, payload []byte, sub, role string, ttl int64) {
		signing := enc(header) + "." + enc(payload)
		wellFormed := false
		switch mode % tokModes {
		case tokSigned:
			token = sign(mac(key, signing), signing)
		case tokOtherKey:
			token = sign(mac([]byte(testSecret+"-rotated-out"), signing), signing)
		case tokNone:
			token = signing + "."
		case tokHS512:
			m, _ := jwt.SigningMethodHS512.Sign(signing, key)
			token = signing + "." + enc(m)
		case tokMutated:
			token = sign(mac(key, signing), signing)
			if len(token) > 0 && sub != "" {
				i := int(uint64(ttl) % uint64(len(token)))
				token = token[:i] + sub[:1] + token[i+1:]
			}
		case tokClaims:
			ttl %= 10 * 365 * 24 * 3600
			c := Claims{Role: Role(role), RegisteredClaims: jwt.RegisteredClaims{Subject: sub, Issuer: "billfn",
				Audience: jwt.ClaimStrings{"billfn"}, IssuedAt: jwt.NewNumericDate(now),
				ExpiresAt: jwt.NewNumericDate(time.Unix(now.Unix()+ttl, 0))}}
			s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			token = s
			id, uerr := uuid.Parse(sub)
			most, _ := DefaultMaxLifetimes().Of(Role(role))
			wellFormed = uerr == nil && id != uuid.Nil && id != uuid.Max && Role(role).Valid() && ttl > -30 &&
				ttl <= int64((most+30*time.Second)/time.Second)
		}
		p, err := v.Verify(token)
		p2, err2 := v.Verify(token)
		if p != p2 || (err == nil) != (err2 == nil) {
			t.Fatalf("a second Verify answers differently: %+v %v, then %+v %v", p, err, p2, err2)
		}
		if mode%tokModes == tokClaims && wellFormed != (err == nil) {
			t.Fatalf("token for sub %q role %q ttl %ds: %v, want accepted=%v", sub, role, ttl, err, wellFormed)
		}
		if err != nil {
			if p != (Principal{}) {
				t.Fatalf("principal %+v alongside %v", p, err)
			}
			return
		}
		switch mode % tokModes {
		case tokOtherKey, tokNone, tokHS512:
			t.Fatalf("accepted a token not signed HS256 with the key (mode %d): %q", mode%tokModes, token)
		}
		checkAccepted(t, key, token, p)
	})
}

// checkAccepted verifies by hand what Verify accepted.
func checkAccepted(t *testing.T, key []byte, token string, p Principal) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("accepted %q with %d segments", token, len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	m := hmac.New(sha256.New, key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		t.Fatalf("accepted %q, whose signature is not the key's MAC of its content", token)
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	var h struct {
		Alg string `json:"alg"`
	}
	if err1 != nil || err2 != nil || json.Unmarshal(hb, &h) != nil || h.Alg != "HS256" {
		t.Fatalf("accepted %q: header %q", token, hb)
	}
	// The claims as encoding/json reads them (jwt does the same).
	var c struct {
		Sub  *string         `json:"sub"`
		Role *string         `json:"role"`
		Iss  *string         `json:"iss"`
		Aud  json.RawMessage `json:"aud"`
		Exp  *json.Number    `json:"exp"`
	}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("accepted %q: payload %q: %v", token, pb, err)
	}
	if c.Sub == nil || c.Role == nil || c.Iss == nil || *c.Iss != "billfn" || c.Exp == nil {
		t.Fatalf("accepted %q: payload %s lacks sub, role, exp or iss billfn", token, pb)
	}
	exp, err := c.Exp.Float64()
	if err != nil || !(exp > float64(now.Unix()-30)) {
		t.Fatalf("accepted %q: exp %s is not in force at %d", token, *c.Exp, now.Unix())
	}
	var aud []string
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		aud = []string{one}
	} else if json.Unmarshal(c.Aud, &aud) != nil {
		t.Fatalf("accepted %q: aud %s", token, c.Aud)
	}
	found := false
	for _, a := range aud {
		found = found || a == "billfn"
	}
	if !found {
		t.Fatalf("accepted %q: aud %s has no billfn", token, c.Aud)
	}
	id, err := uuid.Parse(*c.Sub)
	if err != nil || p.Subject != id.String() {
		t.Fatalf("accepted %q: sub %q, principal %q", token, *c.Sub, p.Subject)
	}
	if !p.Role.Valid() || string(p.Role) != *c.Role {
		t.Fatalf("accepted %q: role %q, principal %q", token, *c.Role, p.Role)
	}
}
