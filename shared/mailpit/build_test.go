package mailpit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

func TestHasUIFindsTheEmbeddedBundle(t *testing.T) {
	dir := t.TempDir()
	with, without := filepath.Join(dir, "with"), filepath.Join(dir, "without")
	os.WriteFile(with, []byte("\x7fELF…server/ui/dist/app.js…"), 0o755)
	os.WriteFile(without, []byte("\x7fELF…server/ui/api/v1/…dist/app.js?{{ .Version }}"), 0o755)
	if !HasUI(with) || HasUI(without) || HasUI(filepath.Join(dir, "missing")) {
		t.Fatalf("HasUI: with %v, without %v, missing %v", HasUI(with), HasUI(without), HasUI(filepath.Join(dir, "missing")))
	}
}

// pinForRegistry drops exactly the lock entries of the repinned packages
// and leaves every other pin alone.
func TestPinForRegistryDropsOnlyTheRepinnedPackages(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, v any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deps := map[string]any{"rapidoc": "^12.0.0", "vue": "^3.2.13"}
	write("package.json", map[string]any{"name": "mailpit", "dependencies": deps})
	write("package-lock.json", map[string]any{"lockfileVersion": 3, "packages": map[string]any{
		"":                                      map[string]any{"dependencies": deps},
		"node_modules/vue":                      map[string]any{"version": "3.5.45"},
		"node_modules/rapidoc":                  map[string]any{"version": "12.1.0"},
		"node_modules/rapidoc/node_modules/foo": map[string]any{"version": "1.0.0"},
		"node_modules/sass-embedded":            map[string]any{"version": "1.108.1"},
		"node_modules/sass-embedded-linux-x64":  map[string]any{"version": "1.108.1"},
		"node_modules/sass":                     map[string]any{"version": "1.108.1"},
		"node_modules/x/node_modules/rapidoc":   map[string]any{"version": "12.1.0"},
	}})
	if err := pinForRegistry(dir); err != nil {
		t.Fatal(err)
	}
	var pkg, lock struct {
		Dependencies map[string]string
		Packages     map[string]struct{ Dependencies map[string]string }
	}
	for name, v := range map[string]any{"package.json": &pkg, "package-lock.json": &lock} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"rapidoc": "9.3.8", "vue": "^3.2.13"}
	if !reflect.DeepEqual(pkg.Dependencies, want) || !reflect.DeepEqual(lock.Packages[""].Dependencies, want) {
		t.Errorf("dependencies: package.json %v, lock %v, want %v", pkg.Dependencies, lock.Packages[""].Dependencies, want)
	}
	var kept []string
	for k := range lock.Packages {
		kept = append(kept, k)
	}
	sort.Strings(kept)
	if w := []string{"", "node_modules/sass", "node_modules/vue"}; !reflect.DeepEqual(kept, w) {
		t.Errorf("lock entries kept: %q, want %q", kept, w)
	}
}
