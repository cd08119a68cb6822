// Command devtoken prints a signed JWT for local use:
//
//	go run ./cmd/devtoken -sub 6f1c7e0a-0000-4000-8000-000000000001 -role admin
//
// It signs with the same configuration the functions verify with (JWT_SECRET
// or the jwt-secret secret file, JWT_ISSUER, JWT_AUDIENCE); without any, it
// uses the local stack's development secret.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
)

func main() {
	sub := flag.String("sub", "", "subject: the user id (UUID); random when empty")
	role := flag.String("role", "customer", "role: admin, service or customer")
	ttl := flag.Duration("ttl", 24*time.Hour, "validity")
	flag.Parse()
	if err := run(*sub, auth.Role(*role), *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "devtoken:", err)
		os.Exit(1)
	}
}

func run(sub string, role auth.Role, ttl time.Duration) error {
	if sub == "" {
		sub = uuid.NewString()
	}
	if _, err := uuid.Parse(sub); err != nil {
		return fmt.Errorf("-sub must be a UUID: %v", err)
	}
	if !role.Valid() {
		return fmt.Errorf("-role must be admin, service or customer")
	}
	var cfg auth.Config
	if err := config.Load(&cfg); err != nil {
		return err
	}
	if cfg.Secret == "" {
		cfg.Secret = auth.LocalDevSecret
	}
	s, err := auth.SignerFor(cfg)
	if err != nil {
		return err
	}
	tok, err := s.Sign(sub, role, ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
