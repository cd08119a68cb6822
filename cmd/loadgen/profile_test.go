package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// -cpuprofile covers the timed phase: the profile starts once "start" is
// answered and is written before "end" is announced, so that make bench,
// which reads it after the end, finds this run's profile.
func TestTheClientsProfileIsWrittenBeforeTheEndIsAnnounced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench", "transfers", "loadgen.pprof")
	var phases []string
	var atEnd []byte
	sync := profiled(func(phase string) {
		phases = append(phases, phase)
		if phase == "end" {
			atEnd, _ = os.ReadFile(path)
		}
	}, path)
	sync("start")
	sync("end")
	if len(phases) != 2 || phases[0] != "start" || phases[1] != "end" {
		t.Fatalf("phases announced: %q, want start then end", phases)
	}
	// A CPU profile, even one without samples, is gzip-compressed protobuf.
	if !bytes.HasPrefix(atEnd, []byte{0x1f, 0x8b}) {
		t.Fatalf("when the end was announced, %s held %d bytes, not a profile", path, len(atEnd))
	}
}
