package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/billfn/billfn/cmd/internal/stackfile"
)

// TestNoSecretInAnyProcessEnvironment runs a stack and reads
// /proc/<pid>/environ of every function process and of the kafka-trigger:
// none holds the value of any secret the stack generated (issue 15:
// secrets are read from files into memory, never copied into the
// environment, where every child process and anyone who may read
// /proc/<pid>/environ would see them).
func TestNoSecretInAnyProcessEnvironment(t *testing.T) {
	e := startStack(t, stackOptions{})
	secrets := map[string]string{} // value -> file
	root := filepath.Join(e.runDir, "secrets")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// Every line of a value counts (a PEM key, a list of keys).
		for _, v := range append([]string{strings.TrimSpace(string(b))}, strings.Split(string(b), "\n")...) {
			v = strings.TrimSpace(v)
			if len(v) >= 12 && !strings.HasPrefix(v, "-----") { // short values (a user name) match by chance
				secrets[v], _ = filepath.Rel(root, path)
			}
		}
		for _, v := range strings.Split(strings.TrimSpace(string(b)), ",") {
			if v = strings.TrimSpace(v); len(v) >= 12 {
				secrets[v], _ = filepath.Rel(root, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) < 5 {
		t.Fatalf("only %d secret values under %s", len(secrets), root)
	}
	bin := filepath.Join(e.runDir, "bin") + string(filepath.Separator)
	var checked []string
	for _, pid := range leftovers(e.marker) {
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		if !strings.HasPrefix(exe, bin) {
			continue // the stack itself (its environment is the developer's), stripe-mock
		}
		env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
		if err != nil {
			t.Fatalf("%s: %v", exe, err)
		}
		checked = append(checked, filepath.Base(exe))
		for _, kv := range bytes.Split(env, []byte{0}) {
			for v, file := range secrets {
				if bytes.Contains(kv, []byte(v)) {
					name, _, _ := strings.Cut(string(kv), "=")
					t.Errorf("%s (pid %d): the environment variable %s holds the secret %s", filepath.Base(exe), pid, name, file)
				}
			}
		}
	}
	st, err := stackfile.Load(filepath.Join("..", "..", "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{"kafka-trigger"}, st.Names()...)
	// The gateway's /system credentials: the kafka-trigger's (it lists the
	// functions there), no function's.
	for _, proc := range want {
		_, err := os.Stat(filepath.Join(root, functionsSubdir, proc, basicAuthPassword))
		if has := err == nil; has != (proc == "kafka-trigger") {
			t.Errorf("%s's secrets hold %s: %v", proc, basicAuthPassword, has)
		}
	}
	for _, w := range want {
		found := false
		for _, c := range checked {
			found = found || c == w
		}
		if !found {
			t.Errorf("no running process of %s was checked (checked: %v)", w, checked)
		}
	}
}
