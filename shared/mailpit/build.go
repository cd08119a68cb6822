package mailpit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/billfn/billfn/shared/gotool"
)

// Mailpit's web UI is a bundle (server/ui/dist: app.js, app.css, fonts)
// that its releases build with npm and embed with go:embed. Its Go module
// has the UI's sources and package.json but not the bundle, so a
// `go install github.com/axllent/mailpit@…` serves the API and the message
// views and a blank page where the UI should be. Find builds it the way
// Mailpit's own Dockerfile does: npm install, npm run package, go build.

// uiMarker is the name under which go:embed stores the UI's script in the
// binary: present only when the bundle was built before go build.
const uiMarker = "ui/dist/app.js"

// HasUI reports whether the mailpit executable at path carries its web UI.
func HasUI(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(uiMarker))
}

// Find returns the path of a mailpit executable with its web UI: on PATH
// or in GOBIN (or GOPATH/bin), else built into GOBIN now from Mailpit's
// module at Version (minutes the first time; npm and go build's output go
// to log). A mailpit without its UI (an earlier go install) is replaced.
// The error says what failed; callers never skip on it.
func Find(ctx context.Context, log io.Writer) (string, error) {
	p, installed, err := gotool.Path(ctx, "mailpit")
	if err != nil {
		return "", err
	}
	if installed && HasUI(p) {
		return p, nil
	}
	gobin, err := gotool.Bin(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(gobin, "mailpit")
	if bin != p && HasUI(bin) { // a UI-less one on PATH, ours in GOBIN
		return bin, nil
	}
	if installed {
		fmt.Fprintf(log, "%s has no web UI (a go install of Mailpit's module); building one with it\n", p)
	}
	if err := build(ctx, bin, log); err != nil {
		return "", fmt.Errorf("building Mailpit %s with its web UI: %w", Version, err)
	}
	return bin, nil
}

// build builds Mailpit at Version with its web UI into bin. The module's
// source is copied to the user cache (billfn/mailpit-Version), where npm
// builds the UI bundle once; go build then embeds it. A file lock keeps
// two test processes from building at once.
func build(ctx context.Context, bin string, log io.Writer) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("npm is not installed, and Mailpit's web UI is built with it (Mailpit's Go module has the UI's sources, not the bundle): " +
			"make services installs Debian's npm, or run apt-get install npm")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "billfn", "mailpit-"+Version)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if HasUI(bin) { // another process built it while this one waited
		return nil
	}
	fmt.Fprintf(log, "building mailpit %s with its web UI into %s (once; a few minutes: npm in %s, then go build)\n", Version, bin, dir)
	if _, err := os.Stat(filepath.Join(dir, "server", "ui", "dist", "app.js")); err != nil {
		if err := buildUI(ctx, npm, dir, log); err != nil {
			return err
		}
	}
	tmp := bin + ".building"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/axllent/mailpit/config.Version="+Version, "-o", tmp, ".")
	cmd.Dir = dir
	// Mailpit's own go.mod and go.sum, not billfn's; CGO off as its releases.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build in %s: %w", dir, err)
	}
	if !HasUI(tmp) {
		os.Remove(tmp)
		return fmt.Errorf("go build in %s made a mailpit without its web UI (%s missing)", dir, uiMarker)
	}
	return os.Rename(tmp, bin)
}

// buildUI lays Mailpit's module source out in dir and builds its UI bundle
// there with npm (server/ui/dist).
func buildUI(ctx context.Context, npm, dir string, log io.Writer) error {
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/axllent/mailpit@"+Version)
	dl.Dir = os.TempDir() // outside any module: Mailpit's dependencies are not billfn's
	dl.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	var stderr bytes.Buffer
	dl.Stderr = &stderr
	out, err := dl.Output()
	if err != nil {
		return fmt.Errorf("go mod download github.com/axllent/mailpit@%s: %w\n%s", Version, err, stderr.Bytes())
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download github.com/axllent/mailpit@%s: no source directory in %q", Version, out)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.CopyFS(dir, os.DirFS(mod.Dir)); err != nil {
		return fmt.Errorf("copy %s to %s: %w", mod.Dir, dir, err)
	}
	if err := pinForRegistry(dir); err != nil {
		return err
	}
	for _, args := range [][]string{
		// No install scripts: esbuild and sass-embedded ship their native
		// binaries as per-platform packages, which need none.
		{"install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"},
		{"run", "package"}, // Mailpit's release build of the bundle (esbuild.config.mjs)
	} {
		cmd := exec.CommandContext(ctx, npm, args...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("npm %s in %s: %w (its output is above)", strings.Join(args, " "), dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "server", "ui", "dist", "app.js")); err != nil {
		return fmt.Errorf("npm run package in %s made no server/ui/dist/app.js", dir)
	}
	return nil
}

// registryRepins are the packages Mailpit v1.33.1's package-lock.json pins
// at versions the npm registry billfn's machines reach does not serve
// (npm ci answers 404; checked with npm view on 2026-12-03), with the
// version to use instead ("" keeps package.json's range): rapidoc ^12
// (newest there 9.3.8; it draws only the API documentation page,
// /api/v1/) and sass-embedded 1.108.1 with its per-platform packages
// (1.108.2 there). Their lock entries are dropped so npm install resolves
// them again; every other package stays at the version the lock pins.
var registryRepins = map[string]string{"rapidoc": "9.3.8", "sass-embedded": ""}

// pinForRegistry applies registryRepins to package.json and
// package-lock.json in dir.
func pinForRegistry(dir string) error {
	edit := func(name string, f func(doc map[string]any)) error {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		f(doc)
		if b, err = json.MarshalIndent(doc, "", "  "); err != nil {
			return err
		}
		return os.WriteFile(p, append(b, '\n'), 0o644)
	}
	setDeps := func(pkg map[string]any) {
		deps, _ := pkg["dependencies"].(map[string]any)
		for name, v := range registryRepins {
			if _, ok := deps[name]; ok && v != "" {
				deps[name] = v
			}
		}
	}
	if err := edit("package.json", setDeps); err != nil {
		return err
	}
	return edit("package-lock.json", func(doc map[string]any) {
		pkgs, _ := doc["packages"].(map[string]any)
		if root, ok := pkgs[""].(map[string]any); ok {
			setDeps(root)
		}
		for key := range pkgs {
			i := strings.LastIndex(key, "node_modules/")
			if i < 0 {
				continue
			}
			for name := range registryRepins {
				last := key[i+len("node_modules/"):]
				if last == name || strings.HasPrefix(last, name+"-") || strings.Contains(key, "node_modules/"+name+"/") {
					delete(pkgs, key)
				}
			}
		}
	})
}
