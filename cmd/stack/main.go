// Command stack runs the whole billfn system on one machine, without
// Docker or Kubernetes — `make run`:
//
//   - makes sure PostgreSQL and Redis run (.ci/services.sh), creates the
//     database when missing and applies the migrations;
//   - starts an embedded Kafka broker (kfake) with the architecture's topics
//     and their partition counts plus the dead-letter topic, persisting in
//     bin/run/kafka so a restart of the stack loses no record;
//   - writes the secrets stack.yml names into bin/run/secrets, with an
//     Ed25519 key pair generated on the first start and kept (jwt-private-key,
//     which signs the banner's token, the service token and make token's;
//     jwt-public-key, which the functions verify with); the functions and the
//     kafka-trigger get bin/run/secrets/functions, which holds the declared
//     secrets and never the private key;
//   - builds every function (go build) and starts each as its own process on
//     its own port with the environment and secrets stack.yml gives it,
//     restarting one that dies; a function folder without main.go yet is
//     reported and skipped;
//   - starts stripe-mock when a function's STRIPE_API_BASE points at it,
//     and Mailpit (built from github.com/axllent/mailpit@v1.33.1 with its
//     web UI when missing, see shared/mailpit) when a function sends email (its secrets hold smtp-url,
//     which points at it): the banner prints its web UI's URL;
//   - serves the gateway (cmd/internal/gateway) and runs the kafka-trigger,
//     which also ticks the schedules every BILLFN_TICK_EVERY;
//   - prints the gateway URL, a dev admin JWT (the subject make token
//     signs for too) and ready-to-paste commands, then "billfn is ready"
//     once every function answers its readiness check,
//     logs every process in one stream prefixed by its name, and stops
//     everything on Ctrl-C.
//
// While it runs, bin/run/stack.pid holds its process id. `stack reset`
// (make reset) wipes the state it keeps — the database, the Redis keys
// under REDIS_PREFIX, bin/run with Kafka's data and the generated secrets —
// after a y/N prompt (-force: none), and refuses while a stack runs.
//
// SIGUSR1 stops the Kafka broker and SIGUSR2 starts it again with the same
// data and address (kill -USR1 <stack pid>): a broker restart, as the fault
// tests simulate it (docs/reliability.md).
//
// Addresses come from the environment (defaults in parentheses):
// BILLFN_GATEWAY_ADDR (127.0.0.1:8080), BILLFN_KAFKA_ADDR (127.0.0.1:9092),
// BILLFN_FUNCTION_PORT (8081: the first function's port, the others
// follow in name order), BILLFN_TRIGGER_ADDR (127.0.0.1:8090, the
// kafka-trigger's metrics), BILLFN_TRIGGERS (1: how many kafka-trigger
// processes share the consumer groups), STRIPE_MOCK_ADDR (127.0.0.1:12111),
// MAILPIT_SMTP_ADDR (127.0.0.1:1025), MAILPIT_UI_ADDR (127.0.0.1:8025),
// DATABASE_URL (postgres://postgres@127.0.0.1:5432/billfn?sslmode=disable),
// REDIS_URL (redis://127.0.0.1:6379/0), BILLFN_RUN_DIR (bin/run),
// BILLFN_STACK_FILE (stack.yml), BILLFN_TICK_EVERY (5s). make observe's
// Jaeger serves jaeger-ui's built assets from JAEGER_UI_ASSETS
// (bin/jaeger-ui) when that directory has an index.html.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/billfn/billfn/shared/server"
)

func main() {
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch {
	case len(os.Args) > 1 && os.Args[1] == "reset":
		// make reset [FORCE=1]: bin/stack reset [-force]
		force := len(os.Args) > 2 && (os.Args[2] == "-force" || os.Args[2] == "--force")
		err = reset(ctx, cfg, os.LookupEnv, force, os.Stdin, os.Stdout)
	case len(os.Args) > 1 && os.Args[1] == "tools":
		// make tools: stripe-mock, Mailpit and Jaeger found or built.
		err = tools(ctx, os.Stdout)
	case len(os.Args) > 1 && os.Args[1] == "observe":
		// make observe: Jaeger and Prometheus beside the stack.
		err = observe(ctx, cfg, os.Stdout)
	case len(os.Args) > 1:
		err = userErrorf("unknown argument %q: stack runs the local stack; stack reset [-force] wipes its state; stack observe runs Jaeger and Prometheus; stack tools builds the programs they use", os.Args[1])
	default:
		// The gateway and kfake run in this process: make bench profiles
		// them here (off unless BILLFN_PPROF_DIR is set).
		server.StartPprof("stack")
		tuneRuntime(os.Getenv)
		err = run(ctx, cfg, os.Stdout)
	}
	if err != nil {
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

// tuneRuntime gives the stack's process the functions' GC target
// (server.GCPercent, unless GOGC is set): the gateway and kfake allocate a
// request's buffers and headers that die with it over a live heap of a few
// MB, and at the runtime's 100 the collector, its assists and the sweeper
// were over 5 % of the stack's CPU in make bench's payments (2026-12-05).
func tuneRuntime(getenv func(string) string) { server.SetGC(getenv) }
