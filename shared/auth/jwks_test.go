package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// idp is a real HTTP server serving a JWK Set, as Keycloak, Dex or Auth0
// do at their JWKS endpoint; the test rotates its keys.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []jwkset.JWKMarshal
	fetches atomic.Int64
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		b, _ := json.Marshal(jwkset.JWKSMarshal{Keys: p.keys})
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// publish replaces the served set with the public keys given by kid.
func (p *idp) publish(t *testing.T, keys map[string]any) {
	t.Helper()
	var out []jwkset.JWKMarshal
	for kid, k := range keys {
		j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatalf("JWK of %s: %v", kid, err)
		}
		out = append(out, j.Marshal())
	}
	p.mu.Lock()
	p.keys = out
	p.mu.Unlock()
}

const jwksTestSecret = "billfn-test-secret-0123456789abcdef"

func jwksVerifier(t *testing.T, url string) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Alg: "EdDSA", JWKSURL: url, Issuer: "https://idp.example/realms/billfn", Audience: "billfn",
		Leeway: 30 * time.Second, JWKSRefresh: time.Hour, JWKSMinRefresh: 300 * time.Millisecond, MaxLifetime: auth.DefaultMaxLifetimes()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func idpClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": uuid.NewString(), "role": "customer", "iss": "https://idp.example/realms/billfn", "aud": "billfn",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// idpToken signs claims as the provider does, naming its key by kid.
func idpToken(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func edKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWKSVerifiesByKidAndFollowsTheProvidersRotation(t *testing.T) {
	p := newIDP(t)
	pub1, priv1 := edKey(t)
	pub2, priv2 := edKey(t)
	rk := rsaKey(t, 2048)
	p.publish(t, map[string]any{"ed-1": pub1, "rsa-1": &rk.PublicKey})
	v := jwksVerifier(t, p.srv.URL)

	old := idpToken(t, jwt.SigningMethodEdDSA, priv1, "ed-1", idpClaims())
	for name, tok := range map[string]string{
		"EdDSA by kid": old,
		"RS256 by kid": idpToken(t, jwt.SigningMethodRS256, rk, "rsa-1", idpClaims()),
		"PS256 by kid": idpToken(t, jwt.SigningMethodPS256, rk, "rsa-1", idpClaims()),
	} {
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The provider rotates: ed-2 appears, ed-1 is removed.
	next := idpToken(t, jwt.SigningMethodEdDSA, priv2, "ed-2", idpClaims())
	if _, err := v.Verify(next); err == nil {
		t.Fatal("a token of a key the provider does not serve yet verified")
	}
	p.publish(t, map[string]any{"ed-2": pub2, "rsa-1": &rk.PublicKey})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(next)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key was not fetched after its kid appeared: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The removed key verifies nothing more, although its token was
	// verified (and cached) before.
	if _, err := v.Verify(old); err == nil {
		t.Error("a token of the key the provider removed still verifies")
	}
	if _, err := v.Verify(idpToken(t, jwt.SigningMethodEdDSA, priv1, "ed-1", idpClaims())); err == nil {
		t.Error("a fresh token of the removed key verifies")
	}
}

func TestJWKSUnknownKidsRefetchAtMostOncePerIntervalWithoutWaiting(t *testing.T) {
	p := newIDP(t)
	pub, priv := edKey(t)
	p.publish(t, map[string]any{"ed-1": pub})
	v, err := auth.NewVerifier(auth.Config{Alg: "EdDSA", JWKSURL: p.srv.URL, Issuer: "https://idp.example/realms/billfn", Audience: "billfn",
		JWKSRefresh: time.Hour, JWKSMinRefresh: time.Hour, MaxLifetime: auth.DefaultMaxLifetimes()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	before := p.fetches.Load()
	start := time.Now()
	for i := 0; i < 50; i++ {
		if _, err := v.Verify(idpToken(t, jwt.SigningMethodEdDSA, priv, uuid.NewString(), idpClaims())); err == nil {
			t.Fatal("a token naming an unknown kid verified")
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("50 unknown kids took %s: a refused refresh must not wait", took)
	}
	if n := p.fetches.Load() - before; n > 1 {
		t.Errorf("50 unknown kids fetched the set %d times; at most once per JWT_JWKS_MIN_REFRESH", n)
	}
	if _, err := v.Verify(idpToken(t, jwt.SigningMethodEdDSA, priv, "ed-1", idpClaims())); err != nil {
		t.Errorf("the known key after the flood: %v", err)
	}
}

func TestJWKSRefusesAlgorithmConfusionAndWeakOrSymmetricKeys(t *testing.T) {
	p := newIDP(t)
	pub, priv := edKey(t)
	rk := rsaKey(t, 2048)
	weak := rsaKey(t, 1024)
	p.publish(t, map[string]any{"ed-1": pub, "rsa-1": &rk.PublicKey, "weak": &weak.PublicKey})
	sym := []byte("0123456789abcdef0123456789abcdef")
	symJWK, err := jwkset.NewJWKFromKey(sym, jwkset.JWKOptions{
		Marshal: jwkset.JWKMarshalOptions{Private: true}, Metadata: jwkset.JWKMetadataOptions{KID: "sym", ALG: jwkset.AlgHS256}})
	if err != nil {
		t.Fatal(err)
	}
	// A provider's encryption key (Keycloak publishes one beside its
	// signing keys): its private half decrypts, and a key used for both
	// lends its decryption to forging signatures (RFC 7517 4.2: "use"
	// separates them). Until 2026-12-07 it verified tokens like any key.
	encPub, encPriv := edKey(t)
	encJWK, err := jwkset.NewJWKFromKey(encPub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "enc-1", USE: jwkset.UseEnc}})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys = append(p.keys, symJWK.Marshal(), encJWK.Marshal())
	p.mu.Unlock()
	v := jwksVerifier(t, p.srv.URL)

	der, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	edDER, _ := x509.MarshalPKIXPublicKey(pub)
	none := idpToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "ed-1", idpClaims())
	for name, tok := range map[string]string{
		"HS256 keyed with the RSA public key's PEM": idpToken(t, jwt.SigningMethodHS256, rsaPEM, "rsa-1", idpClaims()),
		"HS256 keyed with the Ed25519 public key":   idpToken(t, jwt.SigningMethodHS256, []byte(edDER), "ed-1", idpClaims()),
		"HS256 with a symmetric key in the set":     idpToken(t, jwt.SigningMethodHS256, sym, "sym", idpClaims()),
		"alg none":                                  none,
		"RS256 naming the Ed25519 key":              idpToken(t, jwt.SigningMethodRS256, rk, "ed-1", idpClaims()),
		"EdDSA naming the RSA key":                  idpToken(t, jwt.SigningMethodEdDSA, priv, "rsa-1", idpClaims()),
		"a 1024-bit RSA key":                        idpToken(t, jwt.SigningMethodRS256, weak, "weak", idpClaims()),
		"no kid":                                    idpToken(t, jwt.SigningMethodEdDSA, priv, "", idpClaims()),
		"an encryption key (use enc)":               idpToken(t, jwt.SigningMethodEdDSA, encPriv, "enc-1", idpClaims()),
	} {
		if _, err := v.Verify(tok); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// Every function verifies aud and iss, with JWKS keys too: a token the
// provider minted for another client (audience) or realm is refused.
func TestJWKSChecksAudienceAndIssuer(t *testing.T) {
	p := newIDP(t)
	pub, priv := edKey(t)
	p.publish(t, map[string]any{"ed-1": pub})
	v := jwksVerifier(t, p.srv.URL)
	with := func(k string, val any) jwt.MapClaims {
		c := idpClaims()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	if _, err := v.Verify(idpToken(t, jwt.SigningMethodEdDSA, priv, "ed-1", with("aud", []string{"account", "billfn"}))); err != nil {
		t.Errorf("one of two audiences: %v", err)
	}
	for name, c := range map[string]jwt.MapClaims{
		"another audience": with("aud", "account"),
		"no audience":      with("aud", nil),
		"another issuer":   with("iss", "https://idp.example/realms/other"),
		"no issuer":        with("iss", nil),
		"no expiry":        with("exp", nil),
	} {
		if _, err := v.Verify(idpToken(t, jwt.SigningMethodEdDSA, priv, "ed-1", c)); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestJWKSConfigurationIsChecked(t *testing.T) {
	base := auth.Config{Alg: "EdDSA", Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()}
	for name, c := range map[string]auth.Config{
		"plain http to a public host": func() auth.Config { c := base; c.JWKSURL = "http://idp.example/certs"; return c }(),
		"not a URL":                   func() auth.Config { c := base; c.JWKSURL = "idp.example/certs"; return c }(),
		"with HS256": func() auth.Config {
			c := base
			c.Alg, c.Secret, c.JWKSURL = "HS256", jwksTestSecret, "https://idp.example/certs"
			return c
		}(),
		"without an audience": func() auth.Config { c := base; c.Audience, c.JWKSURL = "", "http://127.0.0.1:1/certs"; return c }(),
	} {
		v, err := auth.NewVerifier(c)
		if err == nil {
			v.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	// http to a loopback or cluster-local provider is allowed; a provider
	// that does not answer yet does not stop the function from starting.
	p := newIDP(t)
	for _, u := range []string{p.srv.URL, "http://localhost:1/realms/billfn/protocol/openid-connect/certs"} {
		c := base
		c.JWKSURL = u
		v, err := auth.NewVerifier(c)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		v.Close()
	}
}
