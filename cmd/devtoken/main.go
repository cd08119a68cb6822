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
// It signs with the same configuration the functions verify with (JWT_SECRET
// or the jwt-secret file under SECRETS_DIR, JWT_ISSUER, JWT_AUDIENCE); make
// token points SECRETS_DIR at the local stack's bin/run/secrets when it
// exists. Without any, it uses the local stack's development secret.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/cmd/internal/localdev"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
)

func main() {
	sub := flag.String("sub", "", "subject: the user id (UUID); default: the role's fixed dev subject (admin: the banner's)")
	role := flag.String("role", "admin", "role: admin, service or customer")
	ttl := flag.Duration("ttl", 24*time.Hour, "validity")
	flag.Parse()
	tok, err := mint(*sub, auth.Role(*role), *ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(1)
	}
	fmt.Println(tok)
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
	var cfg auth.Config
	if err := config.Load(&cfg); err != nil {
		return "", err
	}
	if cfg.Secret == "" {
		cfg.Secret = auth.LocalDevSecret
	}
	s, err := auth.SignerFor(cfg)
	if err != nil {
		return "", err
	}
	return s.Sign(sub, role, ttl)
}
