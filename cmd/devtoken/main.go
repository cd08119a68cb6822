// Command devtoken prints a signed JWT for local use (make token):
//
//	go run ./cmd/devtoken                     # the dev admin, the one make run's banner prints
//	go run ./cmd/devtoken -role customer -sub 6f1c7e0a-0000-4000-8000-000000000001
//
// Without -sub the subject is fixed per role (cmd/internal/localdev): the
// admin is the banner's, so every call names the same caller and an
// Idempotency-Key retried by hand after re-exporting the token still
// replays (keys are scoped to the function and the token's subject).
//
// It signs with the private key of the key pair the functions verify with
// (EdDSA by default: the jwt-private-key file under SECRETS_DIR, PEM
// PKCS#8; JWT_ISSUER, JWT_AUDIENCE); without SECRETS_DIR it reads, like
// make token, the local stack's bin/run/secrets, where make run generates
// the pair on its first start. HS256 (JWT_ALG=HS256 with JWT_SECRET or a jwt-secret file)
// is for a single-tenant development setup only. Without a key it fails
// and says where one comes from. A -ttl longer than the functions accept
// for the role (JWT_MAX_LIFETIME, 24h; for a service token
// JWT_MAX_SERVICE_LIFETIME, 90 days) is refused: such a token would only
// be answered 401.
//
// With -cluster-secrets DIR it generates a cluster's secrets instead (make
// deploy-openfaas and deploy-knative run it): one file per name of the
// template knative/infra/secrets.env, with a fresh Ed25519 key pair (the
// private key goes to -private-key, outside DIR, and is never deployed),
// random keys, passwords and webhook secrets (kept across runs) and a
// service token signed with the private key; it refuses to leave a
// placeholder.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/cmd/internal/localdev"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
)

func main() {
	sub := flag.String("sub", "", "subject: the user id (UUID); default: the role's fixed dev subject (admin: the banner's)")
	role := flag.String("role", "admin", "role: admin, service or customer")
	ttl := flag.Duration("ttl", 24*time.Hour, "validity: at most JWT_MAX_LIFETIME (24h), for -role service JWT_MAX_SERVICE_LIFETIME (2160h)")
	cluster := flag.String("cluster-secrets", "", "generate a cluster's secrets into this directory instead of printing a token")
	template := flag.String("template", "knative/infra/secrets.env", "with -cluster-secrets: the secrets template")
	privKey := flag.String("private-key", "", "with -cluster-secrets: where the JWT private key is kept (default: jwt-private-key beside the directory)")
	flag.Parse()
	if *cluster != "" {
		if *privKey == "" {
			*privKey = filepath.Join(filepath.Dir(filepath.Clean(*cluster)), "jwt-private-key")
		}
		names, err := clusterSecrets(*cluster, *privKey, *template)
		if err != nil {
			fmt.Fprintln(os.Stderr, "devtoken:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "devtoken: %d secrets in %s (%s); the JWT private key is %s\n", len(names), *cluster, strings.Join(names, ", "), *privKey)
		return
	}
	localSecrets()
	tok, err := mint(*sub, auth.Role(*role), *ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(1)
	}
	fmt.Println(tok)
}

// localSecrets points SECRETS_DIR, when it is not set, at the local
// stack's secrets (${BILLFN_RUN_DIR:-bin/run}/secrets, where make run
// keeps its key pair), as make token does: the docs' `go run ./cmd/devtoken
// -role customer -sub <uuid>` then works from the repository as it stands.
func localSecrets() {
	if os.Getenv("SECRETS_DIR") != "" {
		return
	}
	run := os.Getenv("BILLFN_RUN_DIR")
	if run == "" {
		run = filepath.Join("bin", "run")
	}
	if st, err := os.Stat(filepath.Join(run, "secrets")); err == nil && st.IsDir() {
		os.Setenv("SECRETS_DIR", filepath.Join(run, "secrets"))
	}
}

// mint signs a token for sub (the role's fixed dev subject when empty).
func mint(sub string, role auth.Role, ttl time.Duration) (string, error) {
	if !role.Valid() {
		return "", fmt.Errorf("-role must be admin, service or customer")
	}
	if sub == "" {
		sub = localdev.Subject(role)
	}
	if _, err := uuid.Parse(sub); err != nil {
		return "", fmt.Errorf("-sub must be a UUID: %v", err)
	}
	// The functions refuse a token that lives longer than its role's
	// maximum; minting one would only hand out a token that gets 401.
	var bound auth.MaxLifetimes
	if err := config.Load(&bound); err != nil {
		return "", err
	}
	if err := bound.Check(); err != nil {
		return "", err
	}
	if most, name := bound.Of(role); ttl > most {
		return "", fmt.Errorf("-ttl %v is longer than a %s token may live (%s is %v): the functions would refuse it", ttl, role, name, most)
	}
	var cfg auth.SignerConfig
	if err := config.Load(&cfg); err != nil {
		return "", err
	}
	if cfg.Alg != "HS256" && strings.TrimSpace(cfg.PrivateKey) == "" {
		return "", fmt.Errorf("no JWT private key: start the local stack once (make run writes bin/run/secrets/jwt-private-key), or point SECRETS_DIR at a directory holding jwt-private-key (bin/deploy for a cluster make deploy-* set up)")
	}
	s, err := auth.SignerFor(cfg)
	if err != nil {
		return "", err
	}
	return s.Sign(sub, role, ttl)
}
