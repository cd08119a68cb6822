package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// logger writes every process's lines to one stream, each prefixed with
// the process name, without interleaving within a line.
type logger struct {
	mu    sync.Mutex
	out   io.Writer
	width int
}

func (l *logger) line(name, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.out, "%-*s | %s\n", l.width, name, text)
}

func (l *logger) printf(name, format string, args ...any) {
	l.line(name, fmt.Sprintf(format, args...))
}

// pipe copies r to the log line by line under name, and hands each line
// to sink when there is one (the /system/logs book).
func (l *logger) pipe(name string, r io.Reader, done *sync.WaitGroup, sink func(string)) {
	defer done.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l.line(name, sc.Text())
		if sink != nil {
			sink(sc.Text())
		}
	}
}

// proc is one supervised child process: started, its output logged,
// restarted with a growing pause when it dies (the fault tests kill -9
// functions), stopped with SIGTERM then SIGKILL.
type proc struct {
	name   string
	path   string
	args   []string
	env    []string
	dir    string
	health string // URL answering 200 when the process is up; "" = none
	log    *logger
	// addrFn, when set, chooses the address of each launch: the process
	// gets its port as PORT and is healthy once healthPath answers 200
	// there (a function replica).
	addrFn     func(p *proc) (string, error)
	healthPath string
	// onChange runs after a launch, when the process became healthy and
	// after it exited (the provider republishes the replica set).
	onChange func()
	// sink gets every output line as well (the /system/logs book).
	sink  func(string)
	ready atomic.Bool // healthy, read without the lock by the gateway

	mu        sync.Mutex
	addr      string // of the current launch (addrFn)
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the current cmd has exited
	healthy   bool
	startedAt time.Time
	restarts  int
	stopping  bool
	stopped   chan struct{} // closed by stop
	done      chan struct{} // closed when supervision ended
	gen       atomic.Uint64 // bumped when a process exits or starts
}

// generation changes whenever the process is replaced, so the gateway
// drops its pooled connections to the old one.
func (p *proc) generation() uint64 { return p.gen.Load() }

// start launches the process and keeps it running until stop.
func (p *proc) start() error {
	p.done = make(chan struct{})
	p.stopped = make(chan struct{})
	if err := p.launch(); err != nil {
		close(p.done)
		return err
	}
	go p.supervise()
	return nil
}

// currentAddr is where the process listens (addrFn's choice).
func (p *proc) currentAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func (p *proc) changed() {
	if p.onChange != nil {
		p.onChange()
	}
}

func (p *proc) launch() error {
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	health := p.health
	var addr string
	if p.addrFn != nil {
		var err error
		if addr, err = p.addrFn(p); err != nil {
			return err
		}
		// The replica listens where the gateway calls it (127.0.0.1), not
		// on every interface: a laptop does not offer the functions to its
		// network beside a gateway that listens on loopback. Appended
		// last, so it wins over a deployment's own (exec keeps the last).
		host, port, _ := net.SplitHostPort(addr)
		cmd.Env = append(slices.Clip(p.env), "PORT="+port, "BILLFN_LISTEN_HOST="+host)
		health = "http://" + addr + p.healthPath
	}
	cmd.Dir = p.dir
	// Its own process group, so a terminal's Ctrl-C reaches only the stack,
	// which stops the children in order; and killed if the stack dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	var pipes sync.WaitGroup
	pipes.Add(2)
	go p.log.pipe(p.name, stdout, &pipes, p.sink)
	go p.log.pipe(p.name, stderr, &pipes, p.sink)
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.healthy, p.startedAt = cmd, exited, false, time.Now()
	if addr != "" {
		p.addr = addr
	}
	p.mu.Unlock()
	p.ready.Store(false)
	p.gen.Add(1)
	go func() {
		pipes.Wait() // Wait closes the pipes: read them to the end first
		_ = cmd.Wait()
		p.ready.Store(false)
		p.gen.Add(1)
		close(exited)
		p.changed()
	}()
	if health != "" {
		go p.watchHealth(cmd, exited, health)
	}
	p.changed()
	return nil
}

// watchHealth marks the process healthy once its health URL answers 200.
func (p *proc) watchHealth(cmd *exec.Cmd, exited chan struct{}, health string) {
	client := &http.Client{Timeout: time.Second}
	// Often at first (a cold start waits on it), then every 50 ms.
	pause := 2 * time.Millisecond
	for {
		select {
		case <-exited:
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
		res, err := client.Get(health)
		if err != nil {
			continue
		}
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			p.mu.Lock()
			current := p.cmd == cmd
			if current {
				p.healthy = true
				p.ready.Store(true)
			}
			p.mu.Unlock()
			if current {
				p.changed()
			}
			return
		}
	}
}

// waitHealthy waits until the process answers its health URL.
func (p *proc) waitHealthy(ctx context.Context) bool {
	for {
		p.mu.Lock()
		ok := p.healthy
		p.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-p.done:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *proc) supervise() {
	defer close(p.done)
	pause := 200 * time.Millisecond
	for {
		p.mu.Lock()
		cmd, exited := p.cmd, p.exited
		p.mu.Unlock()
		<-exited
		p.mu.Lock()
		stopping := p.stopping
		p.healthy = false
		ran := time.Since(p.startedAt)
		p.mu.Unlock()
		if stopping {
			return
		}
		if ran > 30*time.Second {
			pause = 200 * time.Millisecond // it ran fine for a while: restart at once
		}
		p.log.printf("stack", "%s exited (%s); restarting in %s", p.name, describeExit(cmd.ProcessState), pause)
		select {
		case <-time.After(pause):
		case <-p.stopped:
			return
		}
		pause = min(2*pause, 10*time.Second)
		for {
			p.mu.Lock()
			if p.stopping {
				p.mu.Unlock()
				return
			}
			p.restarts++
			p.mu.Unlock()
			if err := p.launch(); err != nil {
				p.log.printf("stack", "%s: %v; retrying in %s", p.name, err, pause)
				select {
				case <-time.After(pause):
					continue
				case <-p.stopped:
					return
				}
			}
			// stop may have run while this one was starting: it saw the
			// old process only, so stop the new one here.
			p.mu.Lock()
			if p.stopping {
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			}
			p.mu.Unlock()
			break
		}
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs.
func (p *proc) stop(grace time.Duration) {
	p.mu.Lock()
	if !p.stopping && p.stopped != nil {
		close(p.stopped)
	}
	p.stopping = true
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(grace):
			p.log.printf("stack", "%s did not stop within %s; killing it", p.name, grace)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	if p.done != nil {
		<-p.done
	}
}

func describeExit(ps *os.ProcessState) string {
	if ps == nil {
		return "unknown"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d, %s", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit code %d", ps.ExitCode())
}
