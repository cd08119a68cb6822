package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// keys lists the top-level keys of one JSON line in order, repeats included
// (a map would hide a duplicate).
func keys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", line)
	}
	var out []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Every line carries exactly one "function" key, the process that wrote
// it; a line about another function names it under "target".
func TestLogLineHasOneFunctionKey(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(&buf, "kafka-trigger", "debug"))
	ctx := WithRequestID(context.Background(), "req-1")
	log.InfoContext(ctx, "plain")
	log.Info("about itself", "function", "kafka-trigger")
	log.Warn("about another", "function", "process-transaction", "topic", "transaction-events")
	log.With("function", "generate-invoice").Debug("derived logger")
	log.With("function", "kafka-trigger").WithGroup("g").Info("grouped", "function", "capture-payment")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	wantTarget := []string{"", "", "process-transaction", "generate-invoice", ""}
	for i, line := range lines {
		n := 0
		for _, k := range keys(t, line) {
			if k == FunctionKey {
				n++
			}
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if n != 1 || m[FunctionKey] != "kafka-trigger" {
			t.Errorf("line %d has %d function keys (%v): %s", i, n, m[FunctionKey], line)
		}
		if got, _ := m[TargetKey].(string); got != wantTarget[i] {
			t.Errorf("line %d: target %q, want %q: %s", i, got, wantTarget[i], line)
		}
	}
	if !strings.Contains(lines[0], `"request_id":"req-1"`) {
		t.Errorf("no request id: %s", lines[0])
	}
}
