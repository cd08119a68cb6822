package testenv

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update", false, "write testdata/*.golden from what the code writes now (Golden)")

// Golden fails tb unless got is byte for byte testdata/name, the golden
// file (for the pages and e-mails rewritten from templates in issue 20:
// what the templates wrote). With -update it writes got there first.
func Golden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	p := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	if string(got) != string(want) {
		tb.Errorf("%s differs from its golden file:\n got: %s\nwant: %s", name, got, want)
	}
}
