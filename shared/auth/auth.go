// Package auth verifies the bearer JWTs every function accepts.
//
// The algorithm is pinned by configuration (EdDSA with a public key by
// default, or RS256 with a public key; HS256 with a shared secret only when
// JWT_ALG=HS256 is set explicitly, for a single-tenant development setup),
// so "alg":"none" and HS/asymmetric key confusion are rejected before any
// key is used. A function holds only the public key (secret
// jwt-public-key): the private key (jwt-private-key, SignerConfig) lives
// only where tokens are issued, so a compromised function cannot mint
// tokens for the others. exp is required, and not far off: a token lives
// at most JWT_MAX_LIFETIME (customer, admin) or JWT_MAX_SERVICE_LIFETIME
// (service), since nothing revokes a token before its exp; iss and
// aud must match and must be configured (an empty JWT_ISSUER or
// JWT_AUDIENCE is refused, not read as "any"); keys below MinHS256SecretLen
// bytes or MinRSABits bits are refused. The subject is the user id (a
// UUID); the "role" claim is one of admin, service or customer.
//
// With JWT_JWKS_URL the verifier takes its keys from an identity
// provider's JWK Set (Keycloak, Dex, Auth0, ...) instead: a token must name
// its key (kid), the key's type decides the algorithm (RSA: RS/PS, EC: ES,
// OKP: EdDSA; never a symmetric key, so an HS256 token can never be checked
// against a public key; never a key whose "use" is not "sig"), a kid the verifier does not know makes it fetch
// the set again (at most once per JWT_JWKS_MIN_REFRESH, without waiting),
// and the set is fetched every JWT_JWKS_REFRESH, so a key the provider
// removed stops verifying. A key read from a secret file (jwt-public-key,
// jwt-secret) is read again when the file changes (config.WatchSecret), so
// a rotation needs no restart.
//
// Authorization rules are small: admin and service act for anyone, a
// customer only for itself. A customer asking for someone else's resource
// gets 404, exactly like a resource that does not exist, so ids leak nothing.
package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/problem"
)

// Minimum key sizes NewVerifier accepts.
const (
	MinHS256SecretLen = 32   // bytes of JWT_SECRET
	MinRSABits        = 2048 // bits of an RS256 JWT_PUBLIC_KEY
)

// Role is what a principal may do.
type Role string

// The three roles.
const (
	RoleAdmin    Role = "admin"    // operators: everything
	RoleService  Role = "service"  // other functions and trusted backends: act for any user
	RoleCustomer Role = "customer" // end users: only their own resources
)

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleService || r == RoleCustomer }

// Config selects the algorithm and keys a verifier uses. Secrets may come
// from files (see package config). It holds no private key: that is
// SignerConfig's, loaded only by token issuers.
type Config struct {
	Alg       string        `envconfig:"JWT_ALG" default:"EdDSA"`
	Secret    string        `envconfig:"JWT_SECRET" secret:"jwt-secret"`         // HS256
	PublicKey string        `envconfig:"JWT_PUBLIC_KEY" secret:"jwt-public-key"` // PEM, RS256/EdDSA
	Issuer    string        `envconfig:"JWT_ISSUER" default:"billfn"`
	Audience  string        `envconfig:"JWT_AUDIENCE" default:"billfn"`
	Leeway    time.Duration `envconfig:"JWT_LEEWAY" default:"30s"`
	// JWKSURL, when set, is the identity provider's JWK Set (for example
	// Keycloak's https://<host>/realms/<realm>/protocol/openid-connect/certs):
	// keys by kid, instead of JWT_PUBLIC_KEY. https, or http to a loopback
	// or cluster-local (*.svc, *.svc.cluster.local) host.
	JWKSURL string `envconfig:"JWT_JWKS_URL"`
	// JWKSRefresh is how often the JWK Set is fetched again: the longest a
	// key the provider removed keeps verifying.
	JWKSRefresh time.Duration `envconfig:"JWT_JWKS_REFRESH" default:"10m"`
	// JWKSMinRefresh is the least time between two fetches caused by a
	// token naming an unknown kid (a new key after a rotation); more such
	// tokens in between are refused at once, so forged kids cannot make
	// the verifier hammer the provider or wait.
	JWKSMinRefresh time.Duration `envconfig:"JWT_JWKS_MIN_REFRESH" default:"30s"`
	// ReloadEvery is how often the key files (jwt-public-key, jwt-secret)
	// are looked at for a rotation.
	ReloadEvery time.Duration `envconfig:"SECRETS_RELOAD_EVERY" default:"2s"`
	// MaxLifetime bounds how long a token may live, by role.
	MaxLifetime MaxLifetimes
}

// MaxLifetimes are the longest a token may live (exp − iat, or exp − now
// when it has no iat), by role. Nothing revokes a token before its exp, so
// a leaked token is good for as long as it lives: a bound keeps a token
// minted for ten years from staying valid until the key is rotated. The
// service role's is longer because deployments mint one service token for
// all their functions (cmd/devtoken -cluster-secrets: 90 days; make run:
// 30 days).
type MaxLifetimes struct {
	User    time.Duration `envconfig:"JWT_MAX_LIFETIME" default:"24h"`           // customer and admin
	Service time.Duration `envconfig:"JWT_MAX_SERVICE_LIFETIME" default:"2160h"` // 90 days
}

// DefaultMaxLifetimes are MaxLifetimes' defaults, for a Config built in code.
func DefaultMaxLifetimes() MaxLifetimes {
	return MaxLifetimes{User: 24 * time.Hour, Service: 90 * 24 * time.Hour}
}

// Of is the longest a token of role may live and the variable that sets it.
func (m MaxLifetimes) Of(r Role) (time.Duration, string) {
	if r == RoleService {
		return m.Service, "JWT_MAX_SERVICE_LIFETIME"
	}
	return m.User, "JWT_MAX_LIFETIME"
}

// Check refuses a maximum of 0 or less: it is a mistake, not "no bound".
func (m MaxLifetimes) Check() error {
	for _, r := range []Role{RoleCustomer, RoleService} {
		if d, name := m.Of(r); d <= 0 {
			return fmt.Errorf("auth: %s must be more than 0 (the longest a token may live), not %v", name, d)
		}
	}
	return nil
}

// Claims are the JWT claims billfn reads.
type Claims struct {
	Role Role `json:"role"`
	jwt.RegisteredClaims
}

// Principal is the authenticated caller.
type Principal struct {
	Subject string // user id (UUID)
	Role    Role
}

// Privileged reports whether p may act for any user.
func (p Principal) Privileged() bool { return p.Role == RoleAdmin || p.Role == RoleService }

// CanAccess reports whether p may see or change a resource owned by userID.
func (p Principal) CanAccess(userID string) bool { return p.Privileged() || p.Subject == userID }

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	alg    string
	key    atomic.Pointer[keyHolder] // the static key (JWT_PUBLIC_KEY or JWT_SECRET)
	gen    atomic.Uint64             // bumped when the key file changes: cached tokens of the old key are checked again
	watch  *config.Watched           // the key's secret file, when it came from one
	jwks   keyfunc.Keyfunc           // JWT_JWKS_URL's keys, when set
	stop   context.CancelFunc
	now    func() time.Time
	bound  MaxLifetimes  // the longest a token may live, by role
	leeway time.Duration // JWT_LEEWAY, allowed beyond bound as on exp

	mu    sync.Mutex
	cache map[string]cached // verified tokens, so a hot client costs one map lookup
}

type keyHolder struct{ key any }

type cached struct {
	p   Principal
	exp time.Time
	gen uint64
	kid string           // JWKS: the key must still be in the set under this kid,
	key crypto.PublicKey // and still be this key (a provider may re-key a kid)
}

// jwksAlgs are the algorithms a JWK Set's keys may verify: asymmetric only.
var jwksAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

const cacheMax = 4096

// ErrInvalid is returned for any token that does not verify.
var ErrInvalid = errors.New("invalid token")

// parseKey reads the static key of alg: the HS256 secret or a PEM public key.
func parseKey(alg, value string) (any, error) {
	switch alg {
	case "HS256":
		if len(value) < MinHS256SecretLen {
			return nil, fmt.Errorf("auth: JWT_SECRET must be at least %d bytes for HS256", MinHS256SecretLen)
		}
		return []byte(value), nil
	case "RS256":
		k, err := jwt.ParseRSAPublicKeyFromPEM([]byte(value))
		if err != nil {
			return nil, fmt.Errorf("auth: JWT_PUBLIC_KEY: %w", err)
		}
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("auth: JWT_PUBLIC_KEY is a %d-bit RSA key; RS256 needs at least %d bits", k.N.BitLen(), MinRSABits)
		}
		return k, nil
	case "EdDSA":
		k, err := jwt.ParseEdPublicKeyFromPEM([]byte(value))
		if err != nil {
			return nil, fmt.Errorf("auth: JWT_PUBLIC_KEY: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("auth: JWT_ALG %q is not one of HS256, RS256, EdDSA", alg)
}

// NewVerifier builds a verifier from cfg; a missing key is an error. With
// JWT_JWKS_URL it fetches the provider's keys once before it returns (a
// provider that does not answer yet is asked again on the first token).
// Close stops its background work.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{now: time.Now, cache: make(map[string]cached), alg: cfg.Alg, stop: func() {},
		bound: cfg.MaxLifetime, leeway: cfg.Leeway}
	methods := []string{cfg.Alg}
	if cfg.JWKSURL != "" {
		if cfg.Alg == "HS256" {
			return nil, errors.New("auth: JWT_JWKS_URL verifies with the provider's public keys; it cannot be combined with JWT_ALG=HS256")
		}
		methods = jwksAlgs
	} else {
		secret, value := "jwt-public-key", cfg.PublicKey
		if cfg.Alg == "HS256" {
			secret, value = "jwt-secret", cfg.Secret
		}
		k, err := parseKey(cfg.Alg, value)
		if err != nil {
			return nil, err
		}
		v.key.Store(&keyHolder{k})
		// A key from a secret file follows the file: a rotation needs no
		// restart; a new value that does not parse leaves the old in force.
		v.watch, err = config.WatchSecret(secret, cfg.ReloadEvery, func(value string) error {
			k, err := parseKey(cfg.Alg, value)
			if err != nil {
				return err
			}
			v.key.Store(&keyHolder{k})
			v.gen.Add(1)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// An empty iss or aud would turn its check off: a token minted for
	// another service or by another issuer would pass. Both are required.
	if strings.TrimSpace(cfg.Issuer) == "" {
		return nil, errors.New("auth: JWT_ISSUER must not be empty (tokens' iss is always checked)")
	}
	if strings.TrimSpace(cfg.Audience) == "" {
		return nil, errors.New("auth: JWT_AUDIENCE must not be empty (tokens' aud is always checked)")
	}
	// A bound of 0 is a mistake; read as "none" it would let a ten-year
	// token in again.
	if err := cfg.MaxLifetime.Check(); err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	opts = append(opts, jwt.WithIssuer(cfg.Issuer), jwt.WithAudience(cfg.Audience))
	v.parser = jwt.NewParser(opts...)
	if cfg.JWKSURL != "" {
		if err := v.openJWKS(cfg); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// openJWKS starts the JWK Set client of cfg.JWKSURL (MicahParks/keyfunc).
func (v *Verifier) openJWKS(cfg Config) error {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("auth: JWT_JWKS_URL %q is not an http(s) URL", cfg.JWKSURL)
	}
	if u.Scheme == "http" && !localHost(u.Hostname()) {
		return fmt.Errorf("auth: JWT_JWKS_URL %q must be https (http only to a loopback or cluster-local host): whoever can change the keys in transit can mint tokens", cfg.JWKSURL)
	}
	refresh, minRefresh := cfg.JWKSRefresh, cfg.JWKSMinRefresh
	if refresh <= 0 {
		refresh = 10 * time.Minute
	}
	if minRefresh <= 0 {
		minRefresh = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	noFirstErr := true
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:      &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		HTTPTimeout: 10 * time.Second,
		// Started without the provider is not fatal: a token with an
		// unknown kid fetches the set again.
		NoErrorReturnFirstHTTPReq: &noFirstErr,
		RefreshInterval:           refresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(minRefresh), 1),
		// Longer than the fetch, shorter than minRefresh: when the limiter
		// has no token, Wait refuses at once instead of holding the request.
		RateLimitWaitMax: min(minRefresh/2, 10*time.Second) + time.Second,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				slog.Warn("cannot fetch the JWK Set; the keys in force stay", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		return fmt.Errorf("auth: JWT_JWKS_URL: %w", err)
	}
	v.jwks, v.stop = kf, cancel
	return nil
}

// localHost reports whether host is loopback or cluster-local, where http
// to the identity provider does not cross an untrusted network.
func localHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return host == "localhost" || strings.HasSuffix(host, ".svc") || strings.HasSuffix(host, ".svc.cluster.local")
}

// Close stops the verifier's background work (the JWK Set refresh).
func (v *Verifier) Close() { v.stop() }

// keyFor is the jwt.Keyfunc: the static key, or the JWK Set's key of the
// token's kid, whose type must fit the token's algorithm.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if v.jwks == nil {
		return v.key.Load().key, nil
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("the token names no key (kid)")
	}
	k, err := v.jwks.Keyfunc(t)
	if err != nil {
		return nil, err
	}
	// keyfunc's default takes a key whatever its "use"; an encryption key
	// (Keycloak publishes one beside its signing keys) must not verify:
	// its private half decrypts, and a key used for both lends its
	// decryption to forging signatures. A key without "use" signs.
	jwk, err := v.jwks.Storage().KeyRead(context.Background(), kid)
	if err != nil {
		return nil, err
	}
	if use := jwk.Marshal().USE; use != "" && use != jwkset.UseSig {
		return nil, fmt.Errorf("the JWK Set's key %q is for %q, not for signatures", kid, use)
	}
	alg := t.Method.Alg()
	switch key := k.(type) {
	case *rsa.PublicKey:
		if !strings.HasPrefix(alg, "RS") && !strings.HasPrefix(alg, "PS") {
			return nil, fmt.Errorf("an RSA key does not verify %s", alg)
		}
		if key.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("the JWK Set's RSA key has %d bits; at least %d are needed", key.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PublicKey:
		if !strings.HasPrefix(alg, "ES") {
			return nil, fmt.Errorf("an EC key does not verify %s", alg)
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return nil, fmt.Errorf("an Ed25519 key does not verify %s", alg)
		}
	default:
		return nil, fmt.Errorf("a %T key in the JWK Set verifies nothing here", k)
	}
	return k, nil
}

// stillValid reports whether a cached verification still holds: the key
// file has not changed since, and a JWK Set key is still in the set under
// its kid, the same key (a kid re-keyed after a leak drops the old key's
// tokens, cached or not).
func (v *Verifier) stillValid(c cached, now time.Time) bool {
	if !now.Before(c.exp) || c.gen != v.gen.Load() {
		return false
	}
	if v.jwks != nil {
		jwk, err := v.jwks.Storage().KeyRead(context.Background(), c.kid)
		if err != nil {
			return false
		}
		k, ok := jwk.Key().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !k.Equal(c.key) {
			return false
		}
	}
	return true
}

// SetClock replaces the verifier's clock (tests).
func (v *Verifier) SetClock(now func() time.Time) { v.now = now }

// Verify checks a raw token and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	v.watch.Check()
	now := v.now()
	gen := v.gen.Load()
	v.mu.Lock()
	c, ok := v.cache[token]
	v.mu.Unlock()
	if ok && v.stillValid(c, now) {
		return c.p, nil
	}
	var claims Claims
	var used any // the key that verified it, for the cache
	tok, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		k, err := v.keyFor(t)
		used = k
		return k, err
	})
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	id, err := uuid.Parse(claims.Subject)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: sub must be a user id (UUID)", ErrInvalid)
	}
	if id == uuid.Nil || id == uuid.Max {
		// The nil UUID is billfn's own principal (SystemUser: the owner of
		// the system accounts); neither it nor the max UUID is anyone's id.
		return Principal{}, fmt.Errorf("%w: sub %s is reserved", ErrInvalid, id)
	}
	if !claims.Role.Valid() {
		return Principal{}, fmt.Errorf("%w: role %q is not admin, service or customer", ErrInvalid, claims.Role)
	}
	// Checked before the token is cached: a cached token is not checked again.
	if err := v.lifetimeAllowed(claims, now); err != nil {
		return Principal{}, err
	}
	// uuid.Parse also reads upper case, braces, urn:uuid: and no hyphens;
	// the canonical form is what owner ids are compared with (CanAccess).
	p := Principal{Subject: id.String(), Role: claims.Role}
	v.mu.Lock()
	if len(v.cache) >= cacheMax {
		clear(v.cache)
	}
	kid, _ := tok.Header["kid"].(string)
	v.cache[token] = cached{p: p, exp: claims.ExpiresAt.Time, gen: gen, kid: kid, key: used}
	v.mu.Unlock()
	return p, nil
}

// lifetimeAllowed refuses a token that lives longer than its role's
// maximum plus the leeway. Its lifetime is exp − iat; without iat it is
// measured from now, so leaving iat out does not lengthen it.
func (v *Verifier) lifetimeAllowed(c Claims, now time.Time) error {
	start := now
	if c.IssuedAt != nil {
		start = c.IssuedAt.Time
	}
	life := c.ExpiresAt.Sub(start) // saturates: an exp at the end of time is no overflow
	most, name := v.bound.Of(c.Role)
	// life-most, not most+leeway: a maximum near the largest Duration must not wrap.
	if life > most && life-most > v.leeway {
		return fmt.Errorf("%w: a %s token lives %v, longer than %s (%v)", ErrInvalid, c.Role, life, name, most)
	}
	return nil
}

// FromRequest verifies the request's bearer token.
func (v *Verifier) FromRequest(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" {
		return Principal{}, errMissing
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Principal{}, fmt.Errorf("%w: Authorization must be \"Bearer <token>\"", ErrInvalid)
	}
	return v.Verify(strings.TrimSpace(token))
}

var errMissing = errors.New("missing bearer token")

// Unauthorized writes the 401 problem for err with a WWW-Authenticate
// challenge (RFC 6750).
func Unauthorized(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errMissing) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="billfn"`)
		problem.Write(w, r, problem.New(problem.Unauthorized, "a bearer token is required"))
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="billfn", error="invalid_token"`)
	problem.Write(w, r, &problem.Error{Code: problem.Unauthorized, Detail: "the bearer token is invalid or expired", Err: err})
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal the middleware stored.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Middleware requires a valid token with one of roles (any role when none is
// given): 401 without a valid token, 403 with the wrong role.
func (v *Verifier) Middleware(roles ...Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := v.FromRequest(r)
			if err != nil {
				Unauthorized(w, r, err)
				return
			}
			if !HasRole(p, roles...) {
				problem.Write(w, r, problem.New(problem.Forbidden, "role %s may not do this", p.Role))
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// HasRole reports whether p has one of roles (true when roles is empty).
func HasRole(p Principal, roles ...Role) bool {
	if len(roles) == 0 {
		return true
	}
	for _, r := range roles {
		if p.Role == r {
			return true
		}
	}
	return false
}

// Signer issues tokens: for cmd/devtoken, tests and service-to-service calls.
type Signer struct {
	method   jwt.SigningMethod
	key      any
	issuer   string
	audience string
}

// NewHS256Signer signs with a shared secret.
func NewHS256Signer(secret, issuer, audience string) *Signer {
	return &Signer{jwt.SigningMethodHS256, []byte(secret), issuer, audience}
}

// NewSigner signs with a private key: *rsa.PrivateKey (RS256) or
// ed25519.PrivateKey (EdDSA).
func NewSigner(key crypto.Signer, issuer, audience string) (*Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return &Signer{jwt.SigningMethodRS256, k, issuer, audience}, nil
	case ed25519.PrivateKey:
		return &Signer{jwt.SigningMethodEdDSA, k, issuer, audience}, nil
	}
	return nil, fmt.Errorf("auth: unsupported key type %T", key)
}

// SignerConfig is what an issuer of tokens loads (cmd/devtoken, the local
// stack, the load generator), never a function: the private key of EdDSA or
// RS256 (secret jwt-private-key, PEM PKCS#8), or the HS256 secret when
// JWT_ALG=HS256 is set explicitly.
type SignerConfig struct {
	Alg        string `envconfig:"JWT_ALG" default:"EdDSA"`
	Secret     string `envconfig:"JWT_SECRET" secret:"jwt-secret"`           // HS256
	PrivateKey string `envconfig:"JWT_PRIVATE_KEY" secret:"jwt-private-key"` // PEM PKCS#8, RS256/EdDSA
	Issuer     string `envconfig:"JWT_ISSUER" default:"billfn"`
	Audience   string `envconfig:"JWT_AUDIENCE" default:"billfn"`
}

// SignerFor returns the signer cfg describes: its private key for EdDSA or
// RS256 (of the algorithm cfg names), its secret for HS256.
func SignerFor(cfg SignerConfig) (*Signer, error) {
	switch cfg.Alg {
	case "HS256":
		if len(cfg.Secret) < MinHS256SecretLen {
			return nil, fmt.Errorf("auth: JWT_SECRET must be at least %d bytes for HS256", MinHS256SecretLen)
		}
		return NewHS256Signer(cfg.Secret, cfg.Issuer, cfg.Audience), nil
	case "EdDSA", "RS256":
		if strings.TrimSpace(cfg.PrivateKey) == "" {
			return nil, fmt.Errorf("auth: %s needs a private key (secret jwt-private-key or JWT_PRIVATE_KEY)", cfg.Alg)
		}
		key, err := ParsePrivateKeyPEM([]byte(cfg.PrivateKey))
		if err != nil {
			return nil, err
		}
		s, err := NewSigner(key, cfg.Issuer, cfg.Audience)
		if err != nil {
			return nil, err
		}
		if s.method.Alg() != cfg.Alg {
			return nil, fmt.Errorf("auth: jwt-private-key is a %s key, JWT_ALG is %s", s.method.Alg(), cfg.Alg)
		}
		return s, nil
	}
	return nil, fmt.Errorf("auth: JWT_ALG %q is not one of HS256, RS256, EdDSA", cfg.Alg)
}

// ParsePrivateKeyPEM reads a PEM private key: PKCS#8 (Ed25519 or RSA), or
// PKCS#1 RSA.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("auth: jwt-private-key is not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("auth: jwt-private-key: unsupported key type %T", k)
	}
	k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: jwt-private-key is neither PKCS#8 nor PKCS#1: %w", err)
	}
	return k, nil
}

// GenerateEd25519PEM makes a fresh Ed25519 key pair for EdDSA tokens: the
// private key as PEM PKCS#8 (jwt-private-key, for the issuer only) and the
// public key as PEM PKIX (jwt-public-key, for every verifier).
func GenerateEd25519PEM() (privatePEM, publicPEM string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return Ed25519PEM(priv, pub)
}

// Ed25519PEM encodes a key pair as GenerateEd25519PEM does.
func Ed25519PEM(priv ed25519.PrivateKey, pub ed25519.PublicKey) (privatePEM, publicPEM string, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})), nil
}

// Sign issues a token for subject with role, valid for ttl.
func (s *Signer) Sign(subject string, role Role, ttl time.Duration) (string, error) {
	now := time.Now()
	c := Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   subject,
		Issuer:    s.issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		ID:        uuid.NewString(),
	}}
	if s.audience != "" {
		c.Audience = jwt.ClaimStrings{s.audience}
	}
	return jwt.NewWithClaims(s.method, c).SignedString(s.key)
}
