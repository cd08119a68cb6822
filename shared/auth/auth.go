// Package auth verifies the bearer JWTs every function accepts.
//
// The algorithm is pinned by configuration (EdDSA with a public key by
// default, or RS256 with a public key; HS256 with a shared secret only when
// JWT_ALG=HS256 is set explicitly, for a single-tenant development setup),
// so "alg":"none" and HS/asymmetric key confusion are rejected before any
// key is used. A function holds only the public key (secret
// jwt-public-key): the private key (jwt-private-key, SignerConfig) lives
// only where tokens are issued, so a compromised function cannot mint
// tokens for the others. exp is required; iss and
// aud must match and must be configured (an empty JWT_ISSUER or
// JWT_AUDIENCE is refused, not read as "any"); keys below MinHS256SecretLen
// bytes or MinRSABits bits are refused. The subject is the user id (a
// UUID); the "role" claim is one of admin, service or customer.
//
// Authorization rules are small: admin and service act for anyone, a
// customer only for itself. A customer asking for someone else's resource
// gets 404, exactly like a resource that does not exist, so ids leak nothing.
package auth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

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
	key    any
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]cached // verified tokens, so a hot client costs one map lookup
}

type cached struct {
	p   Principal
	exp time.Time
}

const cacheMax = 4096

// ErrInvalid is returned for any token that does not verify.
var ErrInvalid = errors.New("invalid token")

// NewVerifier builds a verifier from cfg; a missing key is an error.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{now: time.Now, cache: make(map[string]cached)}
	var err error
	switch cfg.Alg {
	case "HS256":
		if len(cfg.Secret) < MinHS256SecretLen {
			return nil, fmt.Errorf("auth: JWT_SECRET must be at least %d bytes for HS256", MinHS256SecretLen)
		}
		v.key = []byte(cfg.Secret)
	case "RS256":
		var k *rsa.PublicKey
		if k, err = jwt.ParseRSAPublicKeyFromPEM([]byte(cfg.PublicKey)); err == nil && k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("auth: JWT_PUBLIC_KEY is a %d-bit RSA key; RS256 needs at least %d bits", k.N.BitLen(), MinRSABits)
		}
		v.key = k
	case "EdDSA":
		v.key, err = jwt.ParseEdPublicKeyFromPEM([]byte(cfg.PublicKey))
	default:
		return nil, fmt.Errorf("auth: JWT_ALG %q is not one of HS256, RS256, EdDSA", cfg.Alg)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: JWT_PUBLIC_KEY: %w", err)
	}
	// An empty iss or aud would turn its check off: a token minted for
	// another service or by another issuer would pass. Both are required.
	if strings.TrimSpace(cfg.Issuer) == "" {
		return nil, errors.New("auth: JWT_ISSUER must not be empty (tokens' iss is always checked)")
	}
	if strings.TrimSpace(cfg.Audience) == "" {
		return nil, errors.New("auth: JWT_AUDIENCE must not be empty (tokens' aud is always checked)")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{cfg.Alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	opts = append(opts, jwt.WithIssuer(cfg.Issuer), jwt.WithAudience(cfg.Audience))
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// SetClock replaces the verifier's clock (tests).
func (v *Verifier) SetClock(now func() time.Time) { v.now = now }

// Verify checks a raw token and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	now := v.now()
	v.mu.Lock()
	c, ok := v.cache[token]
	v.mu.Unlock()
	if ok && now.Before(c.exp) {
		return c.p, nil
	}
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return v.key, nil })
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	id, err := uuid.Parse(claims.Subject)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: sub must be a user id (UUID)", ErrInvalid)
	}
	if !claims.Role.Valid() {
		return Principal{}, fmt.Errorf("%w: role %q is not admin, service or customer", ErrInvalid, claims.Role)
	}
	// uuid.Parse also reads upper case, braces, urn:uuid: and no hyphens;
	// the canonical form is what owner ids are compared with (CanAccess).
	p := Principal{Subject: id.String(), Role: claims.Role}
	v.mu.Lock()
	if len(v.cache) >= cacheMax {
		clear(v.cache)
	}
	v.cache[token] = cached{p: p, exp: claims.ExpiresAt.Time}
	v.mu.Unlock()
	return p, nil
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
