package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

const (
	testSecret = "billfn-test-secret-0123456789abcdef" // 35 bytes
	userID     = "8f14e45f-ceea-467a-9575-6b9d1b2ce1a7"
	otherID    = "c9f0f895-fb98-4b91-a0e9-2f5e4e3a2b1c"
)

// now is the fixed instant the deterministic tests run at.
var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Key pairs are costly to generate; make each once.
var (
	rsaKey   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaKey2  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	edKey    = sync.OnceValue(func() ed25519.PrivateKey { _, k, _ := ed25519.GenerateKey(rand.Reader); return k })
	rsaPEM   = sync.OnceValue(func() string { return publicPEM(rsaKey().Public()) })
	edPEM    = sync.OnceValue(func() string { return publicPEM(edKey().Public()) })
	baseConf = Config{Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second, MaxLifetime: DefaultMaxLifetimes()}
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func publicPEM(pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func hsConfig() Config { c := baseConf; c.Alg = "HS256"; c.Secret = testSecret; return c }
func rsConfig() Config { c := baseConf; c.Alg = "RS256"; c.PublicKey = rsaPEM(); return c }
func edConfig() Config { c := baseConf; c.Alg = "EdDSA"; c.PublicKey = edPEM(); return c }

func newVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier(%s): %v", cfg.Alg, err)
	}
	return v
}

// fixedVerifier is a verifier whose clock stands still at now.
func fixedVerifier(t *testing.T, cfg Config) *Verifier {
	v := newVerifier(t, cfg)
	v.SetClock(func() time.Time { return now })
	return v
}

// claims are valid claims for userID as a customer, issued at now.
func claims() Claims {
	return Claims{Role: RoleCustomer, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   userID,
		Issuer:    "billfn",
		Audience:  jwt.ClaimStrings{"billfn"},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute)),
	}}
}

func sign(t *testing.T, method jwt.SigningMethod, c jwt.Claims, key any) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return tok
}

func hs(t *testing.T, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, c, []byte(testSecret))
}

func with(mutate func(*Claims)) Claims {
	c := claims()
	mutate(&c)
	return c
}

func b64(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func assertRejected(t *testing.T, v *Verifier, token string) {
	t.Helper()
	p, err := v.Verify(token)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify = %+v, %v; want an error wrapping ErrInvalid", p, err)
	}
	if p != (Principal{}) {
		t.Fatalf("Verify returned principal %+v alongside an error", p)
	}
}

func TestVerifyAcceptsAValidHS256Token(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	for _, role := range []Role{RoleAdmin, RoleService, RoleCustomer} {
		p, err := v.Verify(hs(t, with(func(c *Claims) { c.Role = role })))
		if err != nil {
			t.Fatalf("role %s: %v", role, err)
		}
		if p != (Principal{Subject: userID, Role: role}) {
			t.Fatalf("role %s: principal %+v", role, p)
		}
	}
}

func TestVerifyAcceptsTokensWithinTheLeeway(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	tests := map[string]Claims{
		"expired 10s ago":        with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-10 * time.Second)) }),
		"issued 10s in future":   with(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(10 * time.Second)) }),
		"one of two audiences":   with(func(c *Claims) { c.Audience = jwt.ClaimStrings{"billing-ui", "billfn"} }),
		"not before now":         with(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now) }),
		"no iat (it is allowed)": with(func(c *Claims) { c.IssuedAt = nil }),
	}
	for name, c := range tests {
		if _, err := v.Verify(hs(t, c)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestVerifyCanonicalizesTheSubject(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	for _, sub := range []string{
		strings.ToUpper(userID),
		"{" + userID + "}",
		"urn:uuid:" + userID,
		strings.ReplaceAll(userID, "-", ""),
	} {
		p, err := v.Verify(hs(t, with(func(c *Claims) { c.Subject = sub })))
		if err != nil {
			t.Fatalf("sub %q: %v", sub, err)
		}
		if p.Subject != userID {
			t.Fatalf("sub %q gave Subject %q, want the canonical %q", sub, p.Subject, userID)
		}
		if !p.CanAccess(userID) {
			t.Fatalf("sub %q cannot access its own resources", sub)
		}
	}
}

func TestVerifyRejectsBadHS256Tokens(t *testing.T) {
	header := b64(map[string]string{"alg": "none", "typ": "JWT"})
	noneByHand := header + "." + b64(claims()) + "."
	noneByLib := sign(t, jwt.SigningMethodNone, claims(), jwt.UnsafeAllowNoneSignatureType)

	valid := hs(t, claims())
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64(with(func(c *Claims) { c.Role = RoleAdmin })) + "." + parts[2]
	stripped := parts[0] + "." + parts[1] + "."

	tests := []struct {
		name  string
		token string
	}{
		{"empty", ""},
		{"not a JWT", "hello"},
		{"three junk segments", "a.b.c"},
		{"four segments", valid + ".x"},
		{"alg none built by hand", noneByHand},
		{"alg none signed by the library", noneByLib},
		{"signature stripped", stripped},
		{"payload tampered to admin", tampered},
		{"signed with another secret", sign(t, jwt.SigningMethodHS256, claims(), []byte("another-secret-that-is-long-enough!"))},
		{"HS384 with the right secret", sign(t, jwt.SigningMethodHS384, claims(), []byte(testSecret))},
		{"RS256-signed", sign(t, jwt.SigningMethodRS256, claims(), rsaKey())},
		{"EdDSA-signed", sign(t, jwt.SigningMethodEdDSA, claims(), edKey())},
		{"expired beyond the leeway", hs(t, with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) }))},
		{"without exp", hs(t, with(func(c *Claims) { c.ExpiresAt = nil }))},
		{"issued in the future beyond the leeway", hs(t, with(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(5 * time.Minute)) }))},
		{"not yet valid", hs(t, with(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute)) }))},
		{"wrong audience", hs(t, with(func(c *Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }))},
		{"without audience", hs(t, with(func(c *Claims) { c.Audience = nil }))},
		{"wrong issuer", hs(t, with(func(c *Claims) { c.Issuer = "evil" }))},
		{"without issuer", hs(t, with(func(c *Claims) { c.Issuer = "" }))},
		{"subject not a UUID", hs(t, with(func(c *Claims) { c.Subject = "alice" }))},
		{"without subject", hs(t, with(func(c *Claims) { c.Subject = "" }))},
		{"unknown role", hs(t, with(func(c *Claims) { c.Role = "superuser" }))},
		{"role in the wrong case", hs(t, with(func(c *Claims) { c.Role = "Admin" }))},
		{"without role", hs(t, with(func(c *Claims) { c.Role = "" }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertRejected(t, fixedVerifier(t, hsConfig()), tt.token)
		})
	}
}

func TestVerifyAcceptsRS256AndEdDSAFromNewSigner(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		sign func() (*Signer, error)
	}{
		{"RS256", rsConfig(), func() (*Signer, error) { return NewSigner(rsaKey(), "billfn", "billfn") }},
		{"EdDSA", edConfig(), func() (*Signer, error) { return NewSigner(edKey(), "billfn", "billfn") }},
		{"HS256", hsConfig(), func() (*Signer, error) { return NewHS256Signer(testSecret, "billfn", "billfn"), nil }},
	} {
		s, err := tc.sign()
		if err != nil {
			t.Fatalf("%s signer: %v", tc.name, err)
		}
		tok, err := s.Sign(otherID, RoleService, time.Minute)
		if err != nil {
			t.Fatalf("%s Sign: %v", tc.name, err)
		}
		p, err := newVerifier(t, tc.cfg).Verify(tok)
		if err != nil {
			t.Fatalf("%s Verify: %v", tc.name, err)
		}
		if p != (Principal{Subject: otherID, Role: RoleService}) {
			t.Fatalf("%s principal = %+v", tc.name, p)
		}
	}
}

func TestEachVerifierRejectsTheOtherAlgorithms(t *testing.T) {
	rs, _ := NewSigner(rsaKey(), "billfn", "billfn")
	ed, _ := NewSigner(edKey(), "billfn", "billfn")
	hsS := NewHS256Signer(testSecret, "billfn", "billfn")
	token := func(s *Signer) string {
		tok, err := s.Sign(userID, RoleCustomer, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokens := map[string]string{"HS256": token(hsS), "RS256": token(rs), "EdDSA": token(ed)}
	for _, cfg := range []Config{hsConfig(), rsConfig(), edConfig()} {
		v := newVerifier(t, cfg)
		for alg, tok := range tokens {
			p, err := v.Verify(tok)
			if alg == cfg.Alg {
				if err != nil {
					t.Fatalf("%s verifier rejected its own algorithm: %v", cfg.Alg, err)
				}
				continue
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s verifier accepted a %s token: %+v, %v", cfg.Alg, alg, p, err)
			}
		}
	}
}

func TestRS256VerifierRejectsKeyConfusion(t *testing.T) {
	v := fixedVerifier(t, rsConfig())
	// The classic attack: sign HS256 with the public key as the HMAC secret.
	confused := sign(t, jwt.SigningMethodHS256, claims(), []byte(rsaPEM()))
	assertRejected(t, v, confused)
	der, _ := x509.MarshalPKIXPublicKey(rsaKey().Public())
	assertRejected(t, v, sign(t, jwt.SigningMethodHS256, claims(), der))
	// Other ways in that must stay shut.
	assertRejected(t, v, sign(t, jwt.SigningMethodNone, claims(), jwt.UnsafeAllowNoneSignatureType))
	assertRejected(t, v, sign(t, jwt.SigningMethodRS256, claims(), rsaKey2()))
	assertRejected(t, v, sign(t, jwt.SigningMethodPS256, claims(), rsaKey()))
	assertRejected(t, v, sign(t, jwt.SigningMethodRS512, claims(), rsaKey()))
	// The same claims signed properly pass, so the rejections are about the key.
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, claims(), rsaKey())); err != nil {
		t.Fatalf("valid RS256 token rejected: %v", err)
	}
}

func TestEdDSAVerifierRejectsAnotherKey(t *testing.T) {
	v := fixedVerifier(t, edConfig())
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	assertRejected(t, v, sign(t, jwt.SigningMethodEdDSA, claims(), other))
	assertRejected(t, v, sign(t, jwt.SigningMethodHS256, claims(), []byte(edPEM())))
	if _, err := v.Verify(sign(t, jwt.SigningMethodEdDSA, claims(), edKey())); err != nil {
		t.Fatalf("valid EdDSA token rejected: %v", err)
	}
}

func TestVerifyRejectsACachedTokenOnceItExpires(t *testing.T) {
	clock := now
	v := newVerifier(t, hsConfig())
	v.SetClock(func() time.Time { return clock })
	tok := hs(t, claims()) // expires at now+15m
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	clock = now.Add(14 * time.Minute)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("token before exp: %v", err)
	}
	clock = now.Add(16 * time.Minute) // past exp and the 30s leeway
	assertRejected(t, v, tok)
}

// There is no revocation: a token is good until its exp, so a token minted
// (or leaked) with exp ten years ahead stayed valid until the key rotated.
// A customer's or admin's token lives at most JWT_MAX_LIFETIME (24h), a
// service token at most JWT_MAX_SERVICE_LIFETIME (90 days), plus the
// leeway; its lifetime is exp − iat, or exp − now when it has no iat, so
// leaving iat out does not help. A refused token is not cached.
func TestATokenLivingLongerThanItsRolesMaximumIsRefused(t *testing.T) {
	const day = 24 * time.Hour
	lives := func(role Role, iat *time.Time, exp time.Duration) string {
		return hs(t, with(func(c *Claims) {
			c.Role = role
			c.IssuedAt = nil
			if iat != nil {
				c.IssuedAt = jwt.NewNumericDate(*iat)
			}
			c.ExpiresAt = jwt.NewNumericDate(now.Add(exp))
		}))
	}
	issued := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	v := fixedVerifier(t, hsConfig())
	for name, tok := range map[string]string{
		"customer, 23h":                          lives(RoleCustomer, &now, 23*time.Hour),
		"admin, 24h":                             lives(RoleAdmin, &now, day),
		"customer, 24h and the leeway":           lives(RoleCustomer, &now, day+30*time.Second),
		"service, 89 days":                       lives(RoleService, &now, 89*day),
		"service, 90 days":                       lives(RoleService, &now, 90*day),
		"customer without iat, exp 23h ahead":    lives(RoleCustomer, nil, 23*time.Hour),
		"customer issued 2h ago, exp 21h ahead":  lives(RoleCustomer, issued(2*time.Hour), 21*time.Hour),
		"service without iat, exp 89 days ahead": lives(RoleService, nil, 89*day),
	} {
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
	for name, tok := range map[string]string{
		"customer, 25h":                            lives(RoleCustomer, &now, 25*time.Hour),
		"admin, 25h":                               lives(RoleAdmin, &now, 25*time.Hour),
		"customer, 24h and 31s":                    lives(RoleCustomer, &now, day+31*time.Second),
		"customer, ten years":                      lives(RoleCustomer, &now, 10*365*day),
		"service, 91 days":                         lives(RoleService, &now, 91*day),
		"service, ten years":                       lives(RoleService, &now, 10*365*day),
		"customer without iat, exp 25h ahead":      lives(RoleCustomer, nil, 25*time.Hour),
		"admin without iat, exp ten years ahead":   lives(RoleAdmin, nil, 10*365*day),
		"service without iat, exp 91 days ahead":   lives(RoleService, nil, 91*day),
		"customer issued 2h ago, exp 23h ahead":    lives(RoleCustomer, issued(2*time.Hour), 23*time.Hour),
		"service issued 2 days ago, 89 days ahead": lives(RoleService, issued(2*day), 89*day),
	} {
		// Twice: the first refusal must not have cached it.
		for i := range 2 {
			if p, err := v.Verify(tok); !errors.Is(err, ErrInvalid) || p != (Principal{}) {
				t.Errorf("%s: Verify #%d = %+v, %v; want ErrInvalid", name, i+1, p, err)
			}
		}
		v.mu.Lock()
		_, cached := v.cache[tok]
		v.mu.Unlock()
		if cached {
			t.Errorf("%s: the refused token is in the cache", name)
		}
	}
}

func TestVerifierCacheIsBounded(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	for i := 0; i < cacheMax+10; i++ {
		tok := hs(t, with(func(c *Claims) { c.ID = fmt.Sprint(i) }))
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	v.mu.Lock()
	n := len(v.cache)
	v.mu.Unlock()
	if n > cacheMax || n == 0 {
		t.Fatalf("cache holds %d tokens, want 1..%d", n, cacheMax)
	}
}

func TestVerifyIsSafeForConcurrentUse(t *testing.T) {
	v := newVerifier(t, hsConfig())
	s := NewHS256Signer(testSecret, "billfn", "billfn")
	var tokens []string
	for i := 0; i < 8; i++ {
		tok, err := s.Sign(uuid.NewString(), RoleCustomer, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64*len(tokens))
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 32; i++ {
				if _, err := v.Verify(tokens[(g+i)%len(tokens)]); err != nil {
					errs <- err
				}
				if _, err := v.Verify("garbage"); err == nil {
					errs <- errors.New("garbage accepted")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Verify: %v", err)
	}
}

func TestNewVerifierRejectsWeakOrUnknownConfiguration(t *testing.T) {
	short := hsConfig()
	short.Secret = strings.Repeat("x", 31)
	emptyRSA := rsConfig()
	emptyRSA.PublicKey = ""
	garbageRSA := rsConfig()
	garbageRSA.PublicKey = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
	edWithRSAKey := edConfig()
	edWithRSAKey.PublicKey = rsaPEM()
	rsWithEdKey := rsConfig()
	rsWithEdKey.PublicKey = edPEM()
	tests := map[string]Config{
		"HS256 secret of 31 bytes":  short,
		"HS256 without secret":      {Alg: "HS256"},
		"RS256 without key":         emptyRSA,
		"RS256 with a garbage PEM":  garbageRSA,
		"RS256 with an Ed25519 key": rsWithEdKey,
		"EdDSA with an RSA key":     edWithRSAKey,
		"no alg":                    {Secret: testSecret},
		"alg none":                  {Alg: "none", Secret: testSecret},
		"HS512":                     {Alg: "HS512", Secret: testSecret},
		"lower-case hs256":          {Alg: "hs256", Secret: testSecret},
		"ES256":                     {Alg: "ES256", PublicKey: rsaPEM()},
	}
	for name, cfg := range tests {
		if v, err := NewVerifier(cfg); err == nil || v != nil {
			t.Fatalf("%s: NewVerifier = %v, %v; want an error", name, v, err)
		}
	}
	exact := hsConfig()
	exact.Secret = strings.Repeat("x", 32)
	if _, err := NewVerifier(exact); err != nil {
		t.Fatalf("a 32-byte secret was rejected: %v", err)
	}
}

func TestSignIssuesTheExpectedClaims(t *testing.T) {
	s := NewHS256Signer(testSecret, "billfn", "billfn")
	before := time.Now().Add(-time.Second)
	tok, err := s.Sign(userID, RoleAdmin, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var c Claims
	parsed, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !parsed.Valid {
		t.Fatalf("parse signed token: %v", err)
	}
	if c.Subject != userID || c.Role != RoleAdmin || c.Issuer != "billfn" || len(c.Audience) != 1 || c.Audience[0] != "billfn" {
		t.Fatalf("claims = %+v", c)
	}
	if _, err := uuid.Parse(c.ID); err != nil {
		t.Fatalf("jti %q is not a UUID", c.ID)
	}
	if ttl := c.ExpiresAt.Sub(c.IssuedAt.Time); ttl != 10*time.Minute {
		t.Fatalf("exp - iat = %v, want 10m", ttl)
	}
	if c.IssuedAt.Before(before) || c.IssuedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("iat %v is not now", c.IssuedAt)
	}
	tok2, _ := s.Sign(userID, RoleAdmin, 10*time.Minute)
	if tok2 == tok {
		t.Fatal("two tokens share a jti")
	}
}

func TestSignWithoutAudienceOmitsTheClaim(t *testing.T) {
	tok, err := NewHS256Signer(testSecret, "billfn", "").Sign(userID, RoleCustomer, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["aud"]; ok {
		t.Fatalf("payload %s has an aud claim", payload)
	}
	// ...which a verifier expecting an audience refuses.
	assertRejected(t, newVerifier(t, hsConfig()), tok)
}

func TestSignerForAndNewSignerAcceptOnlySupportedKeys(t *testing.T) {
	edPriv, edPub, err := GenerateEd25519PEM()
	if err != nil {
		t.Fatal(err)
	}
	hs := SignerConfig{Alg: "HS256", Secret: testSecret, Issuer: "billfn", Audience: "billfn"}
	ed := SignerConfig{Alg: "EdDSA", PrivateKey: edPriv, Issuer: "billfn", Audience: "billfn"}
	for _, tc := range []struct {
		cfg SignerConfig
		ver Config
	}{
		{hs, hsConfig()},
		{ed, func() Config { c := edConfig(); c.PublicKey = edPub; return c }()},
	} {
		s, err := SignerFor(tc.cfg)
		if err != nil {
			t.Fatalf("SignerFor(%s): %v", tc.cfg.Alg, err)
		}
		tok, err := s.Sign(userID, RoleCustomer, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newVerifier(t, tc.ver).Verify(tok); err != nil {
			t.Fatalf("%s token from SignerFor rejected by the matching verifier: %v", tc.cfg.Alg, err)
		}
	}
	for name, bad := range map[string]SignerConfig{
		"EdDSA without a private key":     {Alg: "EdDSA", Issuer: "billfn", Audience: "billfn"},
		"EdDSA with a public key":         {Alg: "EdDSA", PrivateKey: edPub, Issuer: "billfn", Audience: "billfn"},
		"RS256 with an Ed25519 key":       {Alg: "RS256", PrivateKey: edPriv, Issuer: "billfn", Audience: "billfn"},
		"HS256 with a 31-byte secret":     {Alg: "HS256", Secret: strings.Repeat("s", 31), Issuer: "billfn", Audience: "billfn"},
		"an algorithm billfn does not do": {Alg: "ES256", PrivateKey: edPriv, Issuer: "billfn", Audience: "billfn"},
	} {
		if _, err := SignerFor(bad); err == nil {
			t.Errorf("SignerFor accepted %s", name)
		}
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := NewSigner(ec, "billfn", "billfn"); err == nil || s != nil {
		t.Fatalf("NewSigner(ECDSA) = %v, %v; want an error", s, err)
	}
}

// serve runs the middleware with roles in front of a handler that records
// the principal it sees.
func serve(t *testing.T, v *Verifier, authorization string, roles ...Role) (*httptest.ResponseRecorder, *Principal) {
	t.Helper()
	var seen *Principal
	h := v.Middleware(roles...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			t.Error("handler ran without a principal in the context")
		}
		seen = &p
		w.WriteHeader(http.StatusOK)
	}))
	r := httptest.NewRequest(http.MethodGet, "/v1/invoices", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec, seen
}

func problemBody(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return m
}

func TestMiddlewareAsksForATokenWhenThereIsNone(t *testing.T) {
	rec, seen := serve(t, newVerifier(t, hsConfig()), "")
	if rec.Code != http.StatusUnauthorized || seen != nil {
		t.Fatalf("no Authorization: status %d, handler ran %v", rec.Code, seen != nil)
	}
	ch := rec.Header().Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, "Bearer") || strings.Contains(ch, "invalid_token") {
		t.Fatalf("WWW-Authenticate = %q, want a plain Bearer challenge", ch)
	}
	if body := problemBody(t, rec); body["code"] != "unauthorized" || body["status"] != float64(401) {
		t.Fatalf("body = %v", body)
	}
}

func TestMiddlewareRejectsABadTokenWithInvalidToken(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	expired := hs(t, with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) }))
	for _, authz := range []string{
		"Basic dXNlcjpwYXNz",
		"Bearer",
		"Bearer ",
		"Token " + hs(t, claims()),
		"Bearer not-a-jwt",
		"Bearer " + expired,
		"Bearer " + hs(t, with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(10 * 365 * 24 * time.Hour)) })),
		"Bearer " + hs(t, claims()) + "x",
	} {
		rec, seen := serve(t, v, authz)
		if rec.Code != http.StatusUnauthorized || seen != nil {
			t.Fatalf("%q: status %d, handler ran %v", authz, rec.Code, seen != nil)
		}
		ch := rec.Header().Get("WWW-Authenticate")
		if !strings.HasPrefix(ch, "Bearer") || !strings.Contains(ch, `error="invalid_token"`) {
			t.Fatalf("%q: WWW-Authenticate = %q, want an invalid_token challenge", authz, ch)
		}
		body := problemBody(t, rec)
		if body["code"] != "unauthorized" {
			t.Fatalf("%q: body = %v", authz, body)
		}
		for _, internal := range []string{"token is expired", "token is malformed", "signature is invalid", "invalid claims", "Authorization must be", "JWT_MAX_LIFETIME"} {
			if raw := rec.Body.String(); strings.Contains(raw, internal) {
				t.Fatalf("%q: body leaks the verifier's error %q: %s", authz, internal, raw)
			}
		}
	}
}

func TestMiddlewareForbidsTheWrongRole(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	rec, seen := serve(t, v, "Bearer "+hs(t, claims()), RoleAdmin)
	if rec.Code != http.StatusForbidden || seen != nil {
		t.Fatalf("customer on an admin route: status %d, handler ran %v", rec.Code, seen != nil)
	}
	if body := problemBody(t, rec); body["code"] != "forbidden" {
		t.Fatalf("body = %v", body)
	}
	if ch := rec.Header().Get("WWW-Authenticate"); ch != "" {
		t.Fatalf("a 403 carries WWW-Authenticate %q", ch)
	}
}

func TestMiddlewareLetsTheRightRoleThrough(t *testing.T) {
	v := fixedVerifier(t, hsConfig())
	service := hs(t, with(func(c *Claims) { c.Role = RoleService; c.Subject = otherID }))
	tests := []struct {
		name  string
		authz string
		roles []Role
		want  Principal
	}{
		{"customer on a customer route", "Bearer " + hs(t, claims()), []Role{RoleCustomer}, Principal{userID, RoleCustomer}},
		{"service on an admin-or-service route", "Bearer " + service, []Role{RoleAdmin, RoleService}, Principal{otherID, RoleService}},
		{"any role when none is required", "Bearer " + hs(t, claims()), nil, Principal{userID, RoleCustomer}},
		{"scheme is case-insensitive", "bearer " + hs(t, claims()), nil, Principal{userID, RoleCustomer}},
		{"extra spaces around the token", "Bearer   " + hs(t, claims()) + " ", nil, Principal{userID, RoleCustomer}},
	}
	for _, tt := range tests {
		rec, seen := serve(t, v, tt.authz, tt.roles...)
		if rec.Code != http.StatusOK || seen == nil {
			t.Fatalf("%s: status %d, body %s", tt.name, rec.Code, rec.Body.String())
		}
		if *seen != tt.want {
			t.Fatalf("%s: handler saw %+v, want %+v", tt.name, *seen, tt.want)
		}
	}
}

func TestPrincipalCanAccess(t *testing.T) {
	tests := []struct {
		p     Principal
		owner string
		want  bool
	}{
		{Principal{userID, RoleCustomer}, userID, true},
		{Principal{userID, RoleCustomer}, otherID, false},
		{Principal{userID, RoleCustomer}, "", false},
		{Principal{userID, RoleAdmin}, otherID, true},
		{Principal{userID, RoleService}, otherID, true},
		{Principal{"", RoleCustomer}, otherID, false},
		{Principal{userID, "superuser"}, otherID, false},
	}
	for _, tt := range tests {
		if got := tt.p.CanAccess(tt.owner); got != tt.want {
			t.Fatalf("%+v.CanAccess(%q) = %v, want %v", tt.p, tt.owner, got, tt.want)
		}
	}
}

func TestRolesAndPrivilege(t *testing.T) {
	tests := []struct {
		r          Role
		valid      bool
		privileged bool
	}{
		{RoleAdmin, true, true},
		{RoleService, true, true},
		{RoleCustomer, true, false},
		{"", false, false},
		{"ADMIN", false, false},
		{"root", false, false},
	}
	for _, tt := range tests {
		if tt.r.Valid() != tt.valid || (Principal{Role: tt.r}).Privileged() != tt.privileged {
			t.Fatalf("role %q: Valid %v Privileged %v", tt.r, tt.r.Valid(), Principal{Role: tt.r}.Privileged())
		}
	}
	if !HasRole(Principal{Role: RoleCustomer}) {
		t.Fatal("HasRole with no roles must allow anyone")
	}
	if !HasRole(Principal{Role: RoleService}, RoleAdmin, RoleService) || HasRole(Principal{Role: RoleCustomer}, RoleAdmin, RoleService) {
		t.Fatal("HasRole does not match the listed roles")
	}
}

func TestPrincipalTravelsInTheContext(t *testing.T) {
	if p, ok := FromContext(context.Background()); ok || p != (Principal{}) {
		t.Fatalf("empty context gave %+v, %v", p, ok)
	}
	want := Principal{Subject: userID, Role: RoleAdmin}
	got, ok := FromContext(WithPrincipal(context.Background(), want))
	if !ok || got != want {
		t.Fatalf("FromContext = %+v, %v; want %+v", got, ok, want)
	}
}

// rsaPEMOfSize is the PEM public key of a fresh RSA key of bits bits.
func rsaPEMOfSize(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Issue 15, item 4: weak keys and an empty iss or aud are refused at
// start-up, each with an error naming the variable to fix; so is a maximum
// token lifetime of 0 or less (it does not mean "no bound").
func TestNewVerifierRefusesWeakKeysAndEmptyClaimsChecks(t *testing.T) {
	with := func(c Config, f func(*Config)) Config { f(&c); return c }
	tests := []struct {
		name, cfgVar string
		cfg          Config
	}{
		{"HS256 secret of 31 bytes", "JWT_SECRET", with(hsConfig(), func(c *Config) { c.Secret = strings.Repeat("s", 31) })},
		{"RS256 key of 1024 bits", "JWT_PUBLIC_KEY", with(rsConfig(), func(c *Config) { c.PublicKey = rsaPEMOfSize(t, 1024) })},
		{"RS256 key of 2040 bits", "JWT_PUBLIC_KEY", with(rsConfig(), func(c *Config) { c.PublicKey = rsaPEMOfSize(t, 2040) })},
		{"HS256 with an empty issuer", "JWT_ISSUER", with(hsConfig(), func(c *Config) { c.Issuer = "" })},
		{"HS256 with an empty audience", "JWT_AUDIENCE", with(hsConfig(), func(c *Config) { c.Audience = "" })},
		{"RS256 with an empty issuer", "JWT_ISSUER", with(rsConfig(), func(c *Config) { c.Issuer = "  " })},
		{"EdDSA with an empty audience", "JWT_AUDIENCE", with(edConfig(), func(c *Config) { c.Audience = "" })},
		{"JWT_MAX_LIFETIME of 0", "JWT_MAX_LIFETIME", with(hsConfig(), func(c *Config) { c.MaxLifetime.User = 0 })},
		{"JWT_MAX_LIFETIME negative", "JWT_MAX_LIFETIME", with(edConfig(), func(c *Config) { c.MaxLifetime.User = -time.Hour })},
		{"JWT_MAX_SERVICE_LIFETIME of 0", "JWT_MAX_SERVICE_LIFETIME", with(rsConfig(), func(c *Config) { c.MaxLifetime.Service = 0 })},
		{"JWT_MAX_SERVICE_LIFETIME negative", "JWT_MAX_SERVICE_LIFETIME", with(hsConfig(), func(c *Config) { c.MaxLifetime.Service = -1 })},
		{"no maximum lifetimes at all", "JWT_MAX_LIFETIME", with(edConfig(), func(c *Config) { c.MaxLifetime = MaxLifetimes{} })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.cfg)
			if err == nil || v != nil {
				t.Fatalf("NewVerifier returned a verifier (%t) and no error; want an error", v != nil)
			}
			if !strings.Contains(err.Error(), tc.cfgVar) {
				t.Fatalf("error %q does not name %s", err, tc.cfgVar)
			}
		})
	}
	if _, err := NewVerifier(with(rsConfig(), func(c *Config) { c.PublicKey = rsaPEMOfSize(t, 2048) })); err != nil {
		t.Fatalf("a 2048-bit RSA key was refused: %v", err)
	}
}

// EdDSA is what a function verifies with when JWT_ALG is not set; HS256 only
// when configured explicitly.
func TestDefaultAlgorithmIsEdDSA(t *testing.T) {
	f, ok := reflect.TypeOf(Config{}).FieldByName("Alg")
	if !ok || f.Tag.Get("default") != "EdDSA" {
		t.Fatalf("Config.Alg defaults to %q, want EdDSA", f.Tag.Get("default"))
	}
	f, _ = reflect.TypeOf(SignerConfig{}).FieldByName("Alg")
	if f.Tag.Get("default") != "EdDSA" {
		t.Fatalf("SignerConfig.Alg defaults to %q, want EdDSA", f.Tag.Get("default"))
	}
	if _, ok := reflect.TypeOf(Config{}).FieldByName("PrivateKey"); ok {
		t.Fatal("the verifier's Config has a private key field: functions would load it")
	}
}

// Algorithm confusion: an HS256 token whose HMAC key is the verifier's own
// public key (the PEM every function holds, as bytes) is refused by an
// EdDSA verifier, and so is an EdDSA token signed with another Ed25519 key.
func TestEdDSAVerifierRefusesAlgConfusionAndForeignKeys(t *testing.T) {
	v := newVerifier(t, edConfig())
	v.SetClock(time.Now)
	claims := func() Claims {
		n := time.Now()
		return Claims{Role: RoleAdmin, RegisteredClaims: jwt.RegisteredClaims{Subject: userID, Issuer: "billfn",
			Audience: jwt.ClaimStrings{"billfn"}, IssuedAt: jwt.NewNumericDate(n), ExpiresAt: jwt.NewNumericDate(n.Add(time.Minute))}}
	}
	for _, key := range []string{edPEM(), strings.TrimSpace(edPEM()), testSecret} {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims()).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		assertRejected(t, v, tok)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims()).SignedString(other)
	if err != nil {
		t.Fatal(err)
	}
	assertRejected(t, v, tok)
	// The same claims with the right key pass: the refusals above are the key's.
	tok, err = jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims()).SignedString(edKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("a token signed with the right key was refused: %v", err)
	}
}

// The PEM GenerateEd25519PEM writes reads back, trimmed as secret files are.
func TestGeneratedEd25519PEMRoundTrips(t *testing.T) {
	priv, pub, err := GenerateEd25519PEM()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(priv, "BEGIN PRIVATE KEY") || !strings.Contains(pub, "BEGIN PUBLIC KEY") {
		t.Fatalf("unexpected PEM:\n%s\n%s", priv, pub)
	}
	s, err := SignerFor(SignerConfig{Alg: "EdDSA", PrivateKey: strings.TrimSpace(priv), Issuer: "billfn", Audience: "billfn"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(userID, RoleService, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := baseConf
	c.Alg, c.PublicKey = "EdDSA", strings.TrimSpace(pub)
	if _, err := NewVerifier(c); err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(c)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
