// Command demo runs previewd end to end on this machine (make demo): a
// local control plane, PostgreSQL, the GitHub fake with three pull
// requests, and the previewd binary; see package internal/demo.
//
//	demo [--previewd bin/previewd] [--timeout 4m] [--interval 2s] [--keep]
//
// It exits 0 when everything behaved, 1 otherwise (after printing the
// relevant logs).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/previewd/previewd/internal/harness/demo"
)

func main() {
	// `make demo | head` must not kill the demo before it cleans up: with
	// SIGPIPE ignored a write to a closed pipe is just an error.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demo.Options
	fs.StringVar(&o.Previewd, "previewd", "", "previewd binary to run (default: go build ./cmd/previewd into the work directory)")
	fs.StringVar(&o.Root, "root", "", "previewd source tree with charts/preview-app (default: found from the working directory)")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "use this running control plane (make cluster-up) instead of starting one")
	fs.StringVar(&o.AdminDatabaseURL, "database-url", "", "PostgreSQL URL of a role that may CREATE DATABASE (default: 127.0.0.1:5432, else a throwaway server)")
	fs.DurationVar(&o.Interval, "interval", demo.DefaultInterval, "previewd's poll interval")
	fs.DurationVar(&o.Timeout, "timeout", demo.DefaultTimeout, "give up after this long")
	fs.BoolVar(&o.KeepWorkDir, "keep", false, "keep the work directory, including the control plane's data and logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected arguments %v\n", fs.Args())
		return 2
	}
	if o.Previewd != "" {
		// The demo runs previewd from its work directory.
		abs, err := filepath.Abs(o.Previewd)
		if err != nil {
			fmt.Fprintf(stderr, "demo: --previewd: %v\n", err)
			return 2
		}
		o.Previewd = abs
	}
	o.Out = stdout
	if _, err := demo.Run(ctx, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "demo: interrupted")
		}
		return 1
	}
	return 0
}
