// Command github-fake serves the in-repo GitHub fake (package githubfake) for
// the demo and scripts.
//
//	github-fake --listen 127.0.0.1:8080 --token ghp_demo=previewd[bot] --seed demo.yaml
//
// The first line on stdout is the address it listens on (useful with the
// default port 0); everything else goes to stderr. The control API is served
// under /_fake/ (see githubfake.ControlEndpoints, or run with --help).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/previewd/previewd/github/githubfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "github-fake:", err)
		os.Exit(2)
	}
}

// config is what the flags say.
type config struct {
	listen        string
	opts          githubfake.Options
	tokens        []githubfake.SeedToken
	seedFile      string
	latency       time.Duration
	appPublicKey  string
	installations map[int64]string
}

// repeated collects a repeatable flag.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("github-fake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      config
		tokens   repeated
		installs repeated
		appID    int64
		appSlug  string
		appTTL   time.Duration
		verbose  bool
		limit    int
	)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:0", "address to listen on; the chosen address is printed as the first line on stdout")
	fs.Var(&tokens, "token", "TOKEN[=LOGIN]: accept TOKEN, acting as LOGIN (default "+githubfake.DefaultLogin+"); repeatable")
	fs.IntVar(&limit, "rate-limit", githubfake.DefaultRateLimit, "primary rate limit per token and installation, per hour")
	fs.Int64Var(&appID, "app-id", 0, "GitHub App id accepted in JWTs (enables POST /app/installations/{id}/access_tokens)")
	fs.StringVar(&cfg.appPublicKey, "app-public-key", "", "PEM file with the App's public key (or its private key)")
	fs.StringVar(&appSlug, "app-slug", "previewd", "App slug: installation tokens act as <slug>[bot]")
	fs.Var(&installs, "app-installation", "ID=OWNER: an installation of the App on OWNER's repositories; repeatable (default: any id)")
	fs.DurationVar(&appTTL, "app-token-ttl", time.Hour, "lifetime of installation tokens")
	fs.BoolVar(&cfg.opts.GHEPrefix, "ghe-prefix", false, "serve the API under /api/v3/ like GitHub Enterprise Server")
	fs.StringVar(&cfg.seedFile, "seed", "", "JSON or YAML file with tokens, repos and pull requests to create (githubfake.Seed)")
	fs.DurationVar(&cfg.latency, "latency", 0, "delay every API request by this much")
	fs.BoolVar(&verbose, "verbose", false, "log every API request to stderr (tokens are not logged)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: github-fake [flags]\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nControl endpoints:\n%s", githubfake.ControlEndpoints)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg.opts.RateLimit = limit
	for _, t := range tokens {
		value, login, _ := strings.Cut(t, "=")
		if value == "" {
			return nil, fmt.Errorf("--token %q: want TOKEN[=LOGIN]", t)
		}
		cfg.tokens = append(cfg.tokens, githubfake.SeedToken{Token: value, Login: login})
	}
	if verbose {
		cfg.opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if len(installs) > 0 {
		cfg.installations = map[int64]string{}
		for _, in := range installs {
			idText, acct, _ := strings.Cut(in, "=")
			id, err := strconv.ParseInt(idText, 10, 64)
			if err != nil || id <= 0 {
				return nil, fmt.Errorf("--app-installation %q: want ID=OWNER", in)
			}
			cfg.installations[id] = acct
		}
	}
	if (appID != 0) != (cfg.appPublicKey != "") {
		return nil, errors.New("--app-id and --app-public-key go together")
	}
	if appID != 0 {
		cfg.opts.App = &githubfake.App{ID: appID, Slug: appSlug, TokenTTL: appTTL, Installations: cfg.installations}
	}
	return &cfg, nil
}

// loadSeed reads a seed file; YAML is a superset of JSON, so both work.
func loadSeed(path string) (githubfake.Seed, error) {
	var seed githubfake.Seed
	data, err := os.ReadFile(path)
	if err != nil {
		return seed, fmt.Errorf("reading seed: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &seed); err != nil {
		return seed, fmt.Errorf("parsing seed %s: %w", path, err)
	}
	return seed, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.opts.App != nil {
		pem, err := os.ReadFile(cfg.appPublicKey)
		if err != nil {
			return fmt.Errorf("reading App key: %w", err)
		}
		if cfg.opts.App.PublicKey, err = githubfake.ParseRSAPublicKeyPEM(pem); err != nil {
			return err
		}
	}
	fake := githubfake.New(cfg.opts)
	for _, t := range cfg.tokens {
		fake.AddTokenAs(t.Token, t.Login, 0)
	}
	if cfg.seedFile != "" {
		seed, err := loadSeed(cfg.seedFile)
		if err != nil {
			return err
		}
		if err := fake.ApplySeed(seed); err != nil {
			return err
		}
	}
	fake.SetLatency(cfg.latency)

	l, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	addr := l.Addr().String()
	fmt.Fprintln(stdout, addr)
	api := "http://" + addr + "/"
	if cfg.opts.GHEPrefix {
		api += "api/v3/"
	}
	fmt.Fprintf(stderr, "github-fake: API %s, control http://%s/_fake/\n", api, addr)

	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	fake.Close() // release hanging requests
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
