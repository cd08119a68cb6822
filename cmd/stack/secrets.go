package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/auth"
)

// serviceSubject is the subject of the local stack's service token.
const serviceSubject = "5e7a1ce0-0000-4000-8000-00000000b111"

// localStripeKey is what stripe-mock accepts (any sk_test_ key works).
const localStripeKey = "sk_test_123"

// writeSecrets writes every secret stack.yml names into dir, as OpenFaaS
// mounts them at /var/openfaas/secrets: the connection URLs and the JWT
// secret follow the stack's configuration on every start; generated ones
// (signing and webhook keys) are kept across restarts so the values stay
// valid for whatever already holds them.
func writeSecrets(dir string, cfg config, st *stackfile.Stack) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	names := []string{"event-signing-key"} // the kafka-trigger's, declared or not
	for _, f := range st.Functions {
		names = append(names, f.Secrets...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := map[string]string{}
	for _, name := range names {
		path := filepath.Join(dir, name)
		var value string
		switch name {
		case "database-url":
			value = cfg.DatabaseURL
		case "redis-url":
			value = cfg.RedisURL
		case "jwt-secret":
			value = auth.LocalDevSecret
		case "stripe-api-key":
			value = localStripeKey
		case "service-token":
			// What a function presents to read account and invoice facts
			// through from another function; minted fresh on every start.
			tok, err := auth.NewHS256Signer(auth.LocalDevSecret, "billfn", "billfn").Sign(serviceSubject, auth.RoleService, 30*24*time.Hour)
			if err != nil {
				return nil, err
			}
			value = tok
		default:
			b, err := os.ReadFile(path)
			if err == nil && len(strings.TrimSpace(string(b))) > 0 {
				out[name] = strings.TrimSpace(string(b))
				continue
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("secret %s: %w", name, err)
			}
			value = generated(name)
		}
		if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		out[name] = value
	}
	return out, nil
}

// generated makes a fresh random secret, shaped like what real systems hand
// out (Stripe webhook secrets start with whsec_).
func generated(name string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	v := hex.EncodeToString(b)
	if strings.Contains(name, "webhook") {
		return "whsec_" + v
	}
	return v
}
