package server

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// Issue 20: the package's init allocates next to nothing at a function's
// start (it was 500 allocations, the status codes' text one by one). The
// test binary runs again with GODEBUG=inittrace=1 and no test, and its
// report of this package's init is read.
func TestInitAllocatesAlmostNothing(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	m := regexp.MustCompile(`init github.com/billfn/billfn/shared/server @\S+ ms, \S+ ms clock, \d+ bytes, (\d+) allocs`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no inittrace line for the package in:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n > 10 {
		t.Fatalf("the package's init made %d allocations, want at most 10", n)
	}
	for code, text := range codeText {
		if text != strconv.Itoa(code) {
			t.Fatalf("codeText[%d] = %q", code, text)
		}
	}
}
