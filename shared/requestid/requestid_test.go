package requestid

import (
	"context"
	"strings"
	"sync"
	"testing"
)

func TestNewIsUniqueAcrossGoroutines(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				id := New()
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if id := New(); !Usable(id) || !strings.HasPrefix(id, prefix+"-") {
		t.Fatalf("New() = %q", id)
	}
}

func TestOnlyUsableIDsAreKept(t *testing.T) {
	for id, want := range map[string]bool{
		"req-123":                     true,
		"":                            false,
		strings.Repeat("a", MaxLen):   true,
		strings.Repeat("a", MaxLen+1): false,
		"with space":                  false,
		"tab\tid":                     false,
		"naïve":                       false,
		"line\nbreak":                 false,
	} {
		if Usable(id) != want {
			t.Errorf("Usable(%q) = %v, want %v", id, !want, want)
		}
	}
	if got := FirstUsable("", "bad id", "call-7"); got != "call-7" {
		t.Fatalf("FirstUsable = %q, want call-7", got)
	}
	if got := FirstUsable("", strings.Repeat("x", 200)); !strings.HasPrefix(got, prefix) {
		t.Fatalf("FirstUsable without a usable candidate = %q, want a new id", got)
	}
	ctx := With(context.Background(), "r1")
	if From(ctx) != "r1" || From(context.Background()) != "" {
		t.Fatal("With/From")
	}
}
