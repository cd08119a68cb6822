package events_test

import (
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// No function links go.uber.org/zap, nor the CloudEvents SDK's protocol
// packages that bring it (its protocol/http, protocol and context): Parse
// reads binary mode with the SDK's binding package over a message of its
// own (binary.go), and nothing else in a function needs them. Fewer linked
// packages is less executable and less idle RSS (issue 20).
func TestNoFunctionLinksZap(t *testing.T) {
	banned := []string{"go.uber.org/zap", "github.com/cloudevents/sdk-go/v2/protocol", "github.com/cloudevents/sdk-go/v2/context"}
	for pkg, imports := range testenv.FunctionImports(t) {
		for _, imp := range imports {
			for _, b := range banned {
				if imp == b || strings.HasPrefix(imp, b+"/") {
					t.Errorf("%s imports %s: a function links it", pkg, imp)
				}
			}
		}
	}
}
