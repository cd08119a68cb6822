package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// FunctionKey is the log attribute naming the process that wrote the line.
// A line carries it exactly once; a line about another function (the
// kafka-trigger's deliveries, say) names that one under TargetKey.
const (
	FunctionKey = "function"
	TargetKey   = "target"
)

// SetupLogging makes the default logger write JSON lines to stderr with the
// function name and, inside a request or delivery, its request id and the
// trace_id and span_id of its trace.
func SetupLogging(function, level string) {
	slog.SetDefault(slog.New(NewLogHandler(os.Stderr, function, level)))
}

// NewLogHandler is the JSON handler SetupLogging installs, writing to w.
func NewLogHandler(w io.Writer, function, level string) slog.Handler {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})
	return contextHandler{Handler: h.WithAttrs([]slog.Attr{slog.String(FunctionKey, function)}), function: function}
}

// contextHandler adds the request id of the record's context and keeps the
// function key single: an attribute named "function" that a caller adds is
// dropped when it repeats the process's own name and renamed "target" when
// it names another function.
type contextHandler struct {
	slog.Handler
	function string
}

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if hasFunctionKey(r) {
		nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a, keep := h.own(a); keep {
				nr.AddAttrs(a)
			}
			return true
		})
		r = nr
	}
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	// Inside a traced request or delivery: the ids that find the line's
	// trace in Jaeger (and the trace's lines in the logs).
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func hasFunctionKey(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == FunctionKey
		return !found
	})
	return found
}

// own rewrites a caller's "function" attribute (see contextHandler).
func (h contextHandler) own(a slog.Attr) (slog.Attr, bool) {
	if a.Key != FunctionKey {
		return a, true
	}
	if a.Value.String() == h.function {
		return a, false
	}
	return slog.Attr{Key: TargetKey, Value: a.Value}, true
}

func (h contextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a, keep := h.own(a); keep {
			kept = append(kept, a)
		}
	}
	return contextHandler{Handler: h.Handler.WithAttrs(kept), function: h.function}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{Handler: h.Handler.WithGroup(name), function: h.function}
}
