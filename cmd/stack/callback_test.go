package main

import (
	"slices"
	"strings"
	"testing"
)

// Issue 15, item 7: the local gateway calls back only public hosts, its own
// address and what CALLBACK_ALLOWED_HOSTS adds.
func TestStackConfigAllowsCallbacksToItsGatewayAndTheListedHosts(t *testing.T) {
	env := map[string]string{"BILLFN_GATEWAY_ADDR": "127.0.0.1:4321", "CALLBACK_ALLOWED_HOSTS": " 127.0.0.1:9999, hooks.internal "}
	cfg, err := loadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:4321", "localhost:4321", "127.0.0.1:9999", "hooks.internal"}
	if !slices.Equal(cfg.CallbackAllowedHosts, want) {
		t.Fatalf("CallbackAllowedHosts = %v, want %v", cfg.CallbackAllowedHosts, want)
	}
	cfg, err = loadConfig(func(k string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:8080", "localhost:8080"}; !slices.Equal(cfg.CallbackAllowedHosts, want) {
		t.Fatalf("default CallbackAllowedHosts = %v, want only the gateway's own address %v", cfg.CallbackAllowedHosts, want)
	}
	for _, bad := range []string{"http://hooks.internal/", "user@host", "host:"} {
		_, err := loadConfig(func(k string) (string, bool) {
			if k == "CALLBACK_ALLOWED_HOSTS" {
				return bad, true
			}
			return "", false
		})
		if err == nil || !strings.Contains(err.Error(), "CALLBACK_ALLOWED_HOSTS") {
			t.Errorf("CALLBACK_ALLOWED_HOSTS=%q: %v, want an error naming it", bad, err)
		}
	}
}
