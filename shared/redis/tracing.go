package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/billfn/billfn/shared/telemetry"
)

// tracingHook makes each command (and pipeline) a client span of a
// recorded trace. A command outside a recorded trace passes straight
// through: no allocation (redisotel resolves the caller's file and line
// and formats the command on every call, sampled or not).
type tracingHook struct{}

func (tracingHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (tracingHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if !trace.SpanFromContext(ctx).IsRecording() {
			return next(ctx, cmd)
		}
		ctx, span := telemetry.Tracer().Start(ctx, cmd.FullName(), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis")))
		defer span.End()
		err := next(ctx, cmd)
		if err != goredis.Nil {
			telemetry.Fail(span, err)
		}
		return err
	}
}

func (tracingHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if !trace.SpanFromContext(ctx).IsRecording() {
			return next(ctx, cmds)
		}
		ctx, span := telemetry.Tracer().Start(ctx, "pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system.name", "redis"), attribute.Int("db.operation.batch.size", len(cmds))))
		defer span.End()
		err := next(ctx, cmds)
		if err != goredis.Nil {
			telemetry.Fail(span, err)
		}
		return err
	}
}
