package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The local gateway's /system API credentials, in the secrets OpenFaaS
// keeps them in (faas-cli login reads the same names on a cluster).
const (
	basicAuthUser     = "basic-auth-user"
	basicAuthPassword = "basic-auth-password"
	defaultSystemUser = "admin"
)

// gatewayCredentials returns the gateway's basic-auth user and password:
// kept in dir (bin/run/secrets) since the first start, generated then (user
// admin, 24 random bytes), so what a developer logged in with stays valid
// across restarts until make reset. A function never gets them: only the
// kafka-trigger does, which reads /system/functions (copyTo).
func gatewayCredentials(dir string, copyTo ...string) (user, password string, err error) {
	read := func(name, def string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil && strings.TrimSpace(string(b)) != "" {
			return strings.TrimSpace(string(b)), nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("secret %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(def), 0o600); err != nil {
			return "", fmt.Errorf("secret %s: %w", name, err)
		}
		return def, nil
	}
	if user, err = read(basicAuthUser, defaultSystemUser); err != nil {
		return "", "", err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	if password, err = read(basicAuthPassword, base64.RawURLEncoding.EncodeToString(b)); err != nil {
		return "", "", err
	}
	for _, d := range copyTo {
		for name, v := range map[string]string{basicAuthUser: user, basicAuthPassword: password} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(v), 0o600); err != nil {
				return "", "", fmt.Errorf("secret %s: %w", name, err)
			}
		}
	}
	return user, password, nil
}
