// Command stack runs the whole billfn system on one machine, without
// Docker or Kubernetes — `make run`:
//
//   - makes sure PostgreSQL and Redis run (.ci/services.sh), creates the
//     database when missing and applies the migrations;
//   - starts an embedded Kafka broker (kfake) with the architecture's topics
//     and their partition counts plus the dead-letter topic, persisting in
//     bin/run/kafka so a restart of the stack loses no record;
//   - writes the secrets stack.yml names into bin/run/secrets (the local JWT
//     secret is auth.LocalDevSecret, the one cmd/devtoken signs with);
//   - builds every function (go build) and starts each as its own process on
//     its own port with the environment and secrets stack.yml gives it,
//     restarting one that dies; a function folder without main.go yet is
//     reported and skipped;
//   - starts stripe-mock when a function's STRIPE_API_BASE points at it;
//   - serves the gateway (cmd/internal/gateway) and runs the kafka-trigger,
//     which also ticks the schedules every BILLFN_TICK_EVERY;
//   - prints the gateway URL, a dev admin JWT and ready-to-paste commands,
//     logs every process in one stream prefixed by its name, and stops
//     everything on Ctrl-C.
//
// SIGUSR1 stops the Kafka broker and SIGUSR2 starts it again with the same
// data and address (kill -USR1 <stack pid>): a broker restart, as the fault
// tests simulate it (docs/reliability.md).
//
// Addresses come from the environment (defaults in parentheses):
// BILLFN_GATEWAY_ADDR (127.0.0.1:8080), BILLFN_KAFKA_ADDR (127.0.0.1:9092),
// BILLFN_FUNCTION_PORT (8081: the first function's port, the others
// follow in name order), BILLFN_TRIGGER_ADDR (127.0.0.1:8090, the
// kafka-trigger's metrics), STRIPE_MOCK_ADDR (127.0.0.1:12111),
// DATABASE_URL (postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable),
// REDIS_URL (redis://127.0.0.1:6379/0), BILLFN_RUN_DIR (bin/run),
// BILLFN_STACK_FILE (stack.yml), BILLFN_TICK_EVERY (5s).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		var ue userError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "stack:", ue.msg)
		} else {
			fmt.Fprintln(os.Stderr, "stack:", err)
		}
		os.Exit(1)
	}
}

// userError is a problem the user can fix, said in one line.
type userError struct{ msg string }

func (e userError) Error() string { return e.msg }

func userErrorf(format string, args ...any) error {
	return userError{fmt.Sprintf(format, args...)}
}
