package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// The header says the server's settings as the server reports them: a
// figure of one run is compared with another's only when they agree, and
// a machine with autovacuum off (this one's CI configuration) or fsync off
// must say so, not be described as the bench assumed it.
func TestTheHeaderSaysTheServersSettingsAsItReportsThem(t *testing.T) {
	ctx := context.Background()
	got, err := readSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(settingNames) {
		t.Fatalf("read %d settings, want %d: %+v", len(got), len(settingNames), got)
	}
	for i, s := range got {
		if s.Name != settingNames[i] {
			t.Errorf("setting %d is %q, want %q", i, s.Name, settingNames[i])
		}
		out, err := exec.Command("psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-Atc", "SHOW "+s.Name).Output()
		if err != nil {
			t.Fatalf("SHOW %s: %v", s.Name, err)
		}
		if want := strings.TrimSpace(string(out)); s.Value != want {
			t.Errorf("%s = %q, SHOW says %q", s.Name, s.Value, want)
		}
	}
	var b strings.Builder
	renderSettings(&b, got)
	for _, s := range got {
		if !strings.Contains(b.String(), "`"+s.Name+"` "+s.Value) {
			t.Errorf("the header leaves out %s = %s:\n%s", s.Name, s.Value, b.String())
		}
	}
}

func TestTheHeaderWarnsOfSettingsThatChangeWhatIsMeasured(t *testing.T) {
	on := []setting{{"fsync", "on"}, {"synchronous_commit", "on"}, {"full_page_writes", "on"}, {"autovacuum", "on"}}
	var b strings.Builder
	renderSettings(&b, on)
	if s := b.String(); strings.Contains(s, "**") || strings.Contains(s, "vacuum") && strings.Contains(s, "dead") {
		t.Errorf("a durable server with autovacuum on is warned about:\n%s", s)
	}
	for _, c := range []struct {
		set  setting
		want string
	}{
		{setting{"fsync", "off"}, "not durable"},
		{setting{"synchronous_commit", "off"}, "not durable"},
		{setting{"autovacuum", "off"}, "dead"},
	} {
		s := append([]setting(nil), on...)
		for i := range s {
			if s[i].Name == c.set.Name {
				s[i] = c.set
			}
		}
		b.Reset()
		renderSettings(&b, s)
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("%s = %s: the header does not say %q:\n%s", c.set.Name, c.set.Value, c.want, b.String())
		}
	}
}
