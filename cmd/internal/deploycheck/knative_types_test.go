//go:build knativetypes

// This file decodes knative/services.yaml into Knative Serving's own Go
// types and runs their validation. It needs modules that go.sum does not
// list yet (k8s.io/api, knative.dev/pkg ... pulled in by knative.dev/serving);
// after `go get knative.dev/serving/pkg/apis/serving/v1@v0.50.0` run
//
//	go test -tags knativetypes ./cmd/internal/deploycheck
//
// and drop the build tag.
package deploycheck

import (
	"context"
	"testing"

	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

func TestKnativeServicesDecodeIntoServingV1AndValidate(t *testing.T) {
	for i, d := range docs(t, "knative/services.yaml") {
		var s servingv1.Service
		if err := yaml.UnmarshalStrict(d, &s); err != nil {
			t.Fatalf("document %d does not decode strictly into serving/v1 Service: %v", i, err)
		}
		s.SetDefaults(context.Background())
		if err := s.Validate(context.Background()); err != nil {
			t.Errorf("Service %s: %v", s.Name, err)
		}
	}
}
