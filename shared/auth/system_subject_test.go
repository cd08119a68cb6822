package auth_test

import (
	"testing"
	"time"

	"github.com/billfn/billfn/shared/auth"
)

// The nil UUID is ledger.SystemUser, the owner of process-transaction's
// system accounts (SYS-EXTERNAL-<CUR>, SYS-CLEARING-…, SYS-REVENUE-…), and
// the principal event-requested transfers act as. A bearer token whose sub
// is that id (in any spelling uuid.Parse reads) is a customer that
// Principal.CanAccess makes the owner of every system account
// (process-transaction's decide.go: !caller.CanAccess(from.UserID)). The
// verifier must not hand out the system principal's id to a token.
func TestATokenCannotBeTheSystemPrincipal(t *testing.T) {
	privPEM, pubPEM, err := auth.GenerateEd25519PEM()
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Alg: "EdDSA", PublicKey: pubPEM, Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second, MaxLifetime: auth.DefaultMaxLifetimes()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	key, err := auth.ParsePrivateKeyPEM([]byte(privPEM))
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.NewSigner(key, "billfn", "billfn")
	if err != nil {
		t.Fatal(err)
	}
	const systemUser = "00000000-0000-0000-0000-000000000000" // ledger.SystemUser
	for _, sub := range []string{systemUser, "urn:uuid:" + systemUser, "00000000000000000000000000000000", "{" + systemUser + "}"} {
		tok, err := s.Sign(sub, auth.RoleCustomer, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if p, err := v.Verify(tok); err == nil {
			t.Errorf("sub %q verified as %+v: a customer token is the system principal, owner of every SYS- account (CanAccess(%s) = %v)",
				sub, p, systemUser, p.CanAccess(systemUser))
		}
	}
}
