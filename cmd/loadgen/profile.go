package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// profiled wraps the timed phase's hand-shake (-sync) so that a CPU
// profile of loadgen itself covers exactly that phase, as make bench's
// profiles of the stack's processes do: it starts once "start" has been
// answered and is written to path before "end" is announced, when the
// bench reads it. The client shares the machine's cores with the system
// it drives, and its CPU is part of each operation's budget. A profile
// that cannot be taken or written is reported and the run goes on.
func profiled(sync func(string), path string) func(string) {
	var buf bytes.Buffer
	running := false
	return func(phase string) {
		switch phase {
		case "start":
			sync(phase)
			if err := pprof.StartCPUProfile(&buf); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: no CPU profile:", err)
				return
			}
			running = true
		case "end":
			if running {
				pprof.StopCPUProfile()
				running = false
				if err := writeProfile(path, buf.Bytes()); err != nil {
					fmt.Fprintln(os.Stderr, "loadgen: CPU profile:", err)
				}
			}
			sync(phase)
		default:
			sync(phase)
		}
	}
}

func writeProfile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
