// This file decodes knative/services.yaml into Knative Serving's own Go
// types (knative.dev/serving v0.50.0) and runs their validation.
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
