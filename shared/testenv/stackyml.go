package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// StackAnnotations returns the annotations stack.yml gives function fn,
// read from the repository root two levels above a function's package
// (functions/<fn>). It fails the test when the file or the function is
// missing.
func StackAnnotations(t testing.TB, fn string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Functions map[string]struct {
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"functions"`
	}
	if err := yaml.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	f, ok := st.Functions[fn]
	if !ok {
		t.Fatalf("stack.yml has no function %s", fn)
	}
	return f.Annotations
}

// StackList splits a comma-separated annotation (topic, billfn.dev/types).
func StackList(ann map[string]string, key string) []string {
	if ann[key] == "" {
		return nil
	}
	return strings.Split(ann[key], ",")
}
