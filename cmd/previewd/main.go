// Command previewd gives every GitHub pull request its own preview
// environment on Kubernetes, without inbound webhooks.
//
//	previewd run     --config previewd.yaml [--once]
//	previewd plan    --config previewd.yaml [--output text|json] [-v]
//	previewd migrate --config previewd.yaml
//	previewd version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/previewd/previewd/kube"
)

func main() {
	// Helm's server-side apply field manager is process-wide: set it once,
	// here, before anything is applied.
	kube.UseFieldManager()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `usage: previewd <command> [flags]

commands:
  run      --config FILE [--once] [--pprof]  run the daemon (--once: one cycle, then exit;
                                            --pprof: Go profiles at /debug/pprof/)
  plan     --config FILE [--output json]    print what the next cycle would do; changes nothing
                                            exit 0: nothing to do, 2: changes planned, 1: error
  migrate  --config FILE                    apply database migrations
  version                                   print the version
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr, getenv)
	case "plan":
		return cmdPlan(ctx, args[1:], stdout, stderr, getenv)
	case "migrate":
		return cmdMigrate(ctx, args[1:], stdout, stderr, getenv)
	case "version", "--version":
		return cmdVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "previewd: unknown command %q\n\n%s", args[0], usage)
		return 1
	}
}
