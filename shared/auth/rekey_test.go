package auth_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The provider replaces the key behind a kid (same kid, new key material:
// a provider that names its key "1" or "default", or an operator who
// revokes a leaked key and republishes under the same kid). docs/security.md
// says "a cached verification is dropped as soon as its key is gone from
// the set": the old key is gone, so a token it signed must stop verifying,
// cached or not. stillValid only checks that the kid is still in the set.
func TestACachedTokenDiesWhenItsKidIsRekeyed(t *testing.T) {
	p := newIDP(t)
	pubOld, privOld := edKey(t)
	pubNew, _ := edKey(t)
	pubX, privX := edKey(t)
	p.publish(t, map[string]any{"main": pubOld})
	v := jwksVerifier(t, p.srv.URL)

	old := idpToken(t, jwt.SigningMethodEdDSA, privOld, "main", idpClaims())
	if _, err := v.Verify(old); err != nil {
		t.Fatalf("the genuine token: %v", err)
	}

	// The provider re-keys "main" (the old private key leaked) and adds "x".
	p.publish(t, map[string]any{"main": pubNew, "x": pubX})
	tokX := idpToken(t, jwt.SigningMethodEdDSA, privX, "x", idpClaims())
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := v.Verify(tokX); err == nil {
			break // the verifier holds the new set
		}
		if time.Now().After(deadline) {
			t.Fatal("the new set was not fetched")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Sanity: a fresh token of the old key is refused: the set no longer holds it.
	if _, err := v.Verify(idpToken(t, jwt.SigningMethodEdDSA, privOld, "main", idpClaims())); err == nil {
		t.Fatal("a fresh token of the replaced key verifies")
	}
	// The cached one must be refused as well.
	if p2, err := v.Verify(old); err == nil {
		t.Errorf("a token signed by the replaced key still verifies from the cache (principal %+v): "+
			"the cache checks only that the kid is still in the set, not that it is the same key", p2)
	}
}
