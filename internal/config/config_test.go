package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func chartDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "charts", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "charts", "app", "Chart.yaml"), []byte("apiVersion: v2\nname: app\nversion: 0.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const good = `
listen: ":9090"
interval: 30s
database_url: postgres://u:hunter2@db/previewd
github:
  token_env: GH
repositories:
  - name: acme/web
    chart: charts/app
    image: registry.example.com/acme/web
    host: "{{ .Namespace }}.preview.example.com"
    values:
      env:
        BRANCH: "{{ .PR.Branch }}"
`

func TestParseGoodAppliesDefaultsAndSecrets(t *testing.T) {
	dir := chartDir(t)
	cfg, err := Parse(strings.NewReader(good), dir, env(map[string]string{"GH": "ghp_secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeployTimeout != 3*time.Minute || cfg.MaxParallelDeploys != 4 || cfg.MaxAttempts != 3 || cfg.Instance != "default" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.GitHub.APIURL != "https://api.github.com/" {
		t.Errorf("api_url default = %q", cfg.GitHub.APIURL)
	}
	if cfg.Token.Reveal() != "ghp_secret" {
		t.Errorf("token not read from env")
	}
	if s := fmt.Sprintf("%v %+v %#v", cfg.Token, cfg, cfg); strings.Contains(s, "ghp_secret") {
		t.Errorf("token printed: %s", s)
	}
	if want := filepath.Join(dir, "charts/app"); cfg.Repositories[0].Chart != want {
		t.Errorf("chart = %q, want %q (relative to the config dir)", cfg.Repositories[0].Chart, want)
	}
}

func TestDatabaseURLFromEnvironmentWins(t *testing.T) {
	cfg, err := Parse(strings.NewReader(good), chartDir(t), env(map[string]string{"GH": "x", EnvDatabaseURL: "postgres://from-env/db"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://from-env/db" {
		t.Errorf("database_url = %q", cfg.DatabaseURL)
	}
}

func TestBadInputNamesFieldAndFix(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string
		want       []string
	}{
		{"unknown key", strings.Replace(good, "listen:", "lisen:", 1), nil, []string{"field lisen not found", "unknown keys are errors"}},
		{"unknown nested key", strings.Replace(good, "token_env: GH", "token_env: GH\n  tokn: x", 1), nil, []string{"field tokn not found"}},
		{"missing token", good, map[string]string{}, []string{"github.token_env: environment variable GH is empty"}},
		{"bad repo name", strings.Replace(good, "acme/web", "web", 1), nil, []string{`repositories[0].name: must be owner/name, got "web"`}},
		{"tagged image", strings.Replace(good, "acme/web\n    host", "acme/web:latest\n    host", 1), nil, []string{"repositories[0].image: must not carry a tag"}},
		{"missing chart", strings.Replace(good, "charts/app", "charts/nope", 1), nil, []string{"repositories[0].chart: no Chart.yaml in"}},
		{"bad host template", strings.Replace(good, "{{ .Namespace }}", "{{ .Nope }}", 1), nil, []string{"repositories[0].host: bad template"}},
		{"bad value template", strings.Replace(good, "{{ .PR.Branch }}", "{{ .PR.Nope }}", 1), nil, []string{"repositories[0].values.env.BRANCH: bad template"}},
		{"interval too short", strings.Replace(good, "30s", "10ms", 1), nil, []string{"interval: must be at least 1s"}},
		{"bad duration", strings.Replace(good, "30s", "thirty", 1), nil, []string{"parsing YAML"}},
		{"no database", strings.Replace(good, "database_url: postgres://u:hunter2@db/previewd", "", 1), nil, []string{"database_url: is empty: set it or the environment variable PREVIEWD_DATABASE_URL"}},
		{"both auths", strings.Replace(good, "token_env: GH", "token_env: GH\n  app:\n    app_id: 1", 1), nil, []string{"github: set either token_env or app"}},
		{"app incomplete", strings.Replace(good, "token_env: GH", "app:\n    app_id: 1", 1), nil, []string{"github.app.installation_id", "github.app.private_key_file"}},
		{"duplicate repo", good + `  - name: ACME/web
    chart: charts/app
    image: registry.example.com/acme/web
`, nil, []string{"repositories[1].name: \"ACME/web\" is listed twice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.env
			if e == nil {
				e = map[string]string{"GH": "x"}
			}
			_, err := Parse(strings.NewReader(tc.yaml), chartDir(t), env(e))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the database password: %v", err)
			}
		})
	}
}

func TestFieldErrorsAreTyped(t *testing.T) {
	_, err := Parse(strings.NewReader(strings.Replace(good, "acme/web", "web", 1)), chartDir(t), env(map[string]string{"GH": "x"}))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "repositories[0].name" {
		t.Fatalf("want *FieldError for repositories[0].name, got %v", err)
	}
}

func TestImageWait(t *testing.T) {
	parse := func(extra string) (*Config, error) {
		return Parse(strings.NewReader(good+extra), chartDir(t), env(map[string]string{"GH": "x"}))
	}
	cfg, err := parse("")
	if err != nil || *cfg.Repositories[0].ImageWait != DefaultImageWait {
		t.Fatalf("default image_wait: %v %v", cfg, err)
	}
	cfg, err = parse("    image_wait: 0s\n")
	if err != nil || *cfg.Repositories[0].ImageWait != 0 {
		t.Fatalf("image_wait: 0s (off) must stay 0: %v", err)
	}
	if _, err := parse("    image_wait: -1m\n"); err == nil || !strings.Contains(err.Error(), "repositories[0].image_wait") {
		t.Errorf("negative image_wait: %v", err)
	}
	if ImageRecheck(0) != 15*time.Second || ImageRecheck(40*time.Second) != 40*time.Second || ImageRecheck(time.Hour) != 2*time.Minute {
		t.Error("ImageRecheck is not 15 s, doubling, at most 2 m")
	}
}
