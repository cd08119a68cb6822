package main

// The machine's primitives: what the operations every scenario is made of
// cost on this machine, measured in the same run. The same code costs very
// different CPU on different machines (a system call costs about 0.1 µs on
// bare metal and more than ten times that in some virtual machines), so a
// run's figures are read beside these.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// primitives are the costs measured: CPU µs per system call and per
// loopback TCP round trip, CPU µs per page fault (the first touch of an
// anonymous page), wall ms per exec of /bin/true, µs per Ed25519
// signature and verification, wall ms from dialing PostgreSQL until a new
// connection's first query answers, and the page faults its backend took
// until then. A zero is a figure that could not be taken.
type primitives struct {
	SyscallUs, RoundTripUs, PageFaultUs, ExecMs, SignUs, VerifyUs, PGConnectMs float64
	PGBackendFaults                                                            float64
}

// pgPrimitiveURL is the server the scenarios use, as the stack's functions
// reach it (loopback, no TLS); its maintenance database, which every
// server has.
const pgPrimitiveURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// measurePrimitives takes each figure as the median of five rounds, with
// the stack stopped (nothing else of the bench runs).
func measurePrimitives() primitives {
	var p primitives
	p.SyscallUs = medianOf(5, func() float64 {
		return cpuPerOp(200_000, func() { syscall.Getppid() })
	})
	p.RoundTripUs = medianOf(5, loopbackRoundTrip)
	p.PageFaultUs = medianOf(5, pageFault)
	p.ExecMs = medianOf(5, func() float64 {
		t0 := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			return 0
		}
		return float64(time.Since(t0).Microseconds()) / 1e3
	})
	_, priv, _ := ed25519.GenerateKey(nil)
	msg := []byte(strings.Repeat("an event's signed bytes ", 16)) // ~380 B, an event's size
	sig := ed25519.Sign(priv, msg)
	pub := priv.Public().(ed25519.PublicKey)
	p.SignUs = medianOf(5, func() float64 {
		return cpuPerOp(2000, func() { ed25519.Sign(priv, msg) })
	})
	p.VerifyUs = medianOf(5, func() float64 {
		return cpuPerOp(2000, func() { ed25519.Verify(pub, msg, sig) })
	})
	var faults []float64
	p.PGConnectMs = medianOf(5, func() float64 {
		ms, backend := pgConnect(pgPrimitiveURL)
		faults = append(faults, float64(backend.MinorFaults))
		return ms
	})
	p.PGBackendFaults = median(faults)
	return p
}

// pgConnect is the wall time, in ms, from dialing PostgreSQL until a new
// connection has answered its first query (a function's readiness needs
// one): the server starts a backend process for it, which is most of the
// time; 0 if it fails. backend is what that process had cost by then (its
// /proc/<pid>/stat: the server runs on this machine).
func pgConnect(url string) (ms float64, backend procStat) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, procStat{}
	}
	defer c.Close(ctx)
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return 0, procStat{}
	}
	ms = float64(time.Since(t0).Microseconds()) / 1e3
	backend, _ = readStat(pid)
	return ms, backend
}

// pageFault is the CPU of this process, in µs, per first write to a page
// of a fresh anonymous mapping: the kernel's page fault, which gives the
// process a zeroed page (what a process pays for each page of memory it
// grows into, a forked process for each page it writes, and, mapping
// pages of its file, for the code it runs the first time); 0 if it fails.
func pageFault() float64 {
	const pages = 16384 // 64 MiB of 4 KiB pages
	size := pages * os.Getpagesize()
	m, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return 0
	}
	defer syscall.Munmap(m)
	// No transparent huge page: one fault would give 512 pages.
	if err := syscall.Madvise(m, syscall.MADV_NOHUGEPAGE); err != nil {
		return 0
	}
	c0 := cpuSelf()
	for i := 0; i < size; i += os.Getpagesize() {
		m[i] = 1
	}
	return float64((cpuSelf() - c0).Nanoseconds()) / 1e3 / pages
}

// loopbackRoundTrip is the CPU of this process (both ends of the
// connection, in the kernel and in Go's runtime) per 200-byte request and
// echo over loopback TCP, in µs; 0 if the connection fails.
func loopbackRoundTrip() float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 512)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0
	}
	defer c.Close()
	const n = 20_000
	b := make([]byte, 200)
	c0 := cpuSelf()
	for range n {
		if _, err := c.Write(b); err != nil {
			return 0
		}
		for got := 0; got < len(b); {
			k, err := c.Read(b[got:])
			if err != nil {
				return 0
			}
			got += k
		}
	}
	return float64((cpuSelf() - c0).Nanoseconds()) / 1e3 / n
}

// cpuPerOp is the CPU of this process per call of f, in µs, over n calls
// (CPU time, not wall time: what else runs on the machine does not count).
func cpuPerOp(n int, f func()) float64 {
	c0 := cpuSelf()
	for range n {
		f()
	}
	return float64((cpuSelf() - c0).Nanoseconds()) / 1e3 / float64(n)
}

// cpuSelf is this process's CPU time so far (user and system).
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func medianOf(n int, f func() float64) float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = f()
	}
	return median(xs)
}

// renderPrimitives writes the section, after pgbench's line.
func renderPrimitives(b *strings.Builder, p primitives) {
	fig := func(v float64, format string) string {
		if v <= 0 {
			return "(not measured)"
		}
		return fmt.Sprintf("**"+format+"**", v)
	}
	b.WriteString("The machine's primitives, measured in the same run with the stack stopped (median of 5 rounds; `cmd/bench/primitives.go`): ")
	fmt.Fprintf(b, "a system call (`getppid`) costs %s of CPU, a 200-byte request and its echo over loopback TCP %s (both ends, kernel and Go runtime), ",
		fig(p.SyscallUs, "%.2f µs"), fig(p.RoundTripUs, "%.1f µs"))
	fmt.Fprintf(b, "an exec of `/bin/true` until it exits %s, an Ed25519 signature %s and its verification %s, ",
		fig(p.ExecMs, "%.1f ms"), fig(p.SignUs, "%.1f µs"), fig(p.VerifyUs, "%.1f µs"))
	fmt.Fprintf(b, "a page fault (the first write to a page of fresh memory) %s, ", fig(p.PageFaultUs, "%.1f µs"))
	fmt.Fprintf(b, "a new PostgreSQL connection until its first query answers %s (the server forks a backend process for each, which had taken %s page faults by then: %s of their cost). ",
		fig(p.PGConnectMs, "%.1f ms"), fig(p.PGBackendFaults, "%.0f"), fig(p.PGBackendFaults*p.PageFaultUs/1e3, "%.1f ms"))
	b.WriteString("Every operation below is made of these (each HTTP hop and each PostgreSQL round trip is at least one loopback round trip, each event is signed once and verified by each consumer, start-to-ready begins with an exec, takes a page fault for each page of memory and code a process touches, and waits for a PostgreSQL connection), so figures from machines whose primitives differ are not comparable.\n\n")
}
