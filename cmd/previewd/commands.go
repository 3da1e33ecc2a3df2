package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/version"
	"github.com/previewd/previewd/internal/wire"
	"github.com/previewd/previewd/reconcile"
	"github.com/previewd/previewd/state"
)

type common struct {
	config    string
	logLevel  string
	logFormat string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "path to previewd's YAML configuration (required)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "json or text")
}

func (c *common) load(stderr io.Writer, getenv func(string) string) (*config.Config, *slog.Logger, error) {
	if c.config == "" {
		return nil, nil, errors.New("--config is required: pass the path to previewd's YAML configuration")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch c.logFormat {
	case "json":
		h = slog.NewJSONHandler(stderr, hopts)
	case "text":
		h = slog.NewTextHandler(stderr, hopts)
	default:
		return nil, nil, fmt.Errorf("--log-format must be json or text, got %q", c.logFormat)
	}
	cfg, err := config.Load(c.config, getenv)
	if err != nil {
		return nil, nil, err
	}
	return cfg, slog.New(h), nil
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "previewd:", err)
	return 1
}

func cmdRun(ctx context.Context, args []string, _, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	once := fs.Bool("once", false, "run one cycle, wait for its actions, and exit (non-zero if it failed)")
	listen := fs.String("listen", "", "override the config's listen address")
	profiling := fs.Bool("pprof", false, "also serve Go runtime profiles (heap, CPU, goroutines) at /debug/pprof/ on the listen address")
	leaderWait := fs.Duration("leader-wait", time.Minute, "with --once: how long to wait for another running previewd of this instance to give up the leader lock")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *profiling {
		// A heap profile worth reading at previewd's size: one sample per
		// 64 KiB allocated instead of Go's default 512 KiB.
		runtime.MemProfileRate = 64 << 10
	}
	cfg, log, err := c.load(stderr, getenv)
	if err != nil {
		return fail(stderr, err)
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	d, err := wire.Build(ctx, cfg, wire.Options{Log: log})
	if err != nil {
		return fail(stderr, err)
	}
	defer d.Close()
	d.Profiling = *profiling
	log.Info("previewd starting", "version", version.String(), "repositories", len(cfg.Repositories),
		"interval", cfg.Interval.String(), "instance", cfg.Instance)
	if *once {
		lctx, cancel := context.WithTimeout(ctx, *leaderWait)
		lead, err := d.Store.Lead(lctx, cfg.Instance, time.Second, log)
		cancel()
		if err != nil {
			return fail(stderr, fmt.Errorf("another previewd of instance %q holds the leader lock (waited %s): stop it or use another instance", cfg.Instance, *leaderWait))
		}
		defer lead.Release(context.WithoutCancel(ctx))
		// Stop acting the moment the leadership is lost (a standby may
		// lead already).
		octx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			select {
			case <-lead.Lost():
				log.Error("lost the leader lock; stopping", "err", lead.Err())
				stop()
			case <-octx.Done():
			}
		}()
		if err := d.Loop.RunOnce(octx); err != nil {
			return fail(stderr, err)
		}
		return 0
	}
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	srvErr := make(chan error, 1)
	d.SetLeader(false)
	go func() { srvErr <- d.Serve(srvCtx, cfg.Listen) }()
	done := make(chan struct{})
	go func() { defer close(done); lead(ctx, d, log) }()
	select {
	case <-done:
	case err := <-srvErr:
		log.Error("HTTP endpoints failed", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// lead campaigns for the instance's leader lock and runs the loop while it
// holds it; a standby waits, ready to take over. On SIGTERM the loop stops
// scheduling and waits for in-flight work: Helm operations run to
// completion (they are never cut half-way, so no release is left
// pending-*); readiness waits are cancelled and the next leader verifies
// them.
func lead(ctx context.Context, d *wire.Daemon, log *slog.Logger) {
	for ctx.Err() == nil {
		log.Info("waiting for the leader lock (standby)")
		l, err := d.Store.Lead(ctx, d.Config.Instance, 2*time.Second, log)
		if err != nil {
			return
		}
		d.SetLeader(true)
		log.Info("became the leader: reconciling")
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-l.Lost():
				log.Error("lost the leader lock; stopping work until it is regained", "err", l.Err())
				cancel()
			case <-lctx.Done():
			}
		}()
		_ = d.Loop.Run(lctx)
		cancel()
		d.SetLeader(false)
		l.Release(context.WithoutCancel(ctx))
	}
}

func cmdPlan(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	// plan's own output goes to stdout; logs default to warnings only.
	_ = fs.Set("log-level", "warn")
	output := fs.String("output", "text", "text or json")
	verbose := fs.Bool("v", false, "also list the PRs left alone and why")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *output != "text" && *output != "json" {
		return fail(stderr, fmt.Errorf("--output must be text or json, got %q", *output))
	}
	cfg, log, err := c.load(stderr, getenv)
	if err != nil {
		return fail(stderr, err)
	}
	d, err := wire.Build(ctx, cfg, wire.Options{ReadOnly: true, Log: log})
	if err != nil {
		return fail(stderr, err)
	}
	defer d.Close()
	res, err := d.Loop.Plan(ctx)
	if errors.Is(err, reconcile.ErrRecordsUnreadable) {
		return fail(stderr, fmt.Errorf("%w (has `previewd migrate` been run?)", err))
	}
	if *output == "json" {
		out := struct {
			reconcile.Result
			Errors []string `json:"errors,omitempty"`
		}{Result: res}
		if err != nil {
			out.Errors = strings.Split(err.Error(), "\n")
		}
		if out.Actions == nil {
			out.Actions = []reconcile.Action{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		if len(res.Actions) == 0 {
			fmt.Fprintln(stdout, "No changes: previews match the open pull requests.")
		}
		for _, a := range res.Actions {
			fmt.Fprintln(stdout, a.String())
		}
		if *verbose {
			for _, s := range res.Skipped {
				if s.Number > 0 {
					fmt.Fprintf(stdout, "# %s#%d left alone: %s\n", s.Repo, s.Number, s.Reason)
				} else {
					fmt.Fprintf(stdout, "# %s left alone: %s\n", s.Repo, s.Reason)
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "previewd: observation incomplete (the plan above deletes nothing it could not confirm):", err)
		return 1
	}
	if len(res.Actions) > 0 {
		return 2
	}
	return 0
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if c.config == "" {
		return fail(stderr, errors.New("--config is required"))
	}
	// migrate needs only the database: do not insist on GitHub credentials.
	url := getenv(config.EnvDatabaseURL)
	if url == "" {
		cfg, _, err := c.load(stderr, getenv)
		if err != nil {
			return fail(stderr, err)
		}
		url = cfg.DatabaseURL
	}
	st, err := state.Open(ctx, url)
	if err != nil {
		return fail(stderr, err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, "migrations applied")
	return 0
}

func cmdVersion(stdout io.Writer) int {
	fmt.Fprintln(stdout, "previewd", version.String())
	return 0
}
