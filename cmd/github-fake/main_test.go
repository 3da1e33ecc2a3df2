package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const seedYAML = `
tokens:
  - {token: ghp_seeded, login: "previewd[bot]"}
repos:
  - name: acme/shop
    pulls:
      - {title: Add cart, branch: cart, labels: [preview]}
      - {title: Old, branch: old, state: merged}
`

func TestRunServesSeededFake(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seed, []byte(seedYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--ghe-prefix", "--seed", seed, "--token", "ghp_cli=alice"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addr := strings.TrimSpace(line)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("first line = %q", line)
	}

	for _, tk := range []string{"ghp_seeded", "ghp_cli"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v3/repos/acme/shop/pulls?state=all", nil)
		req.Header.Set("Authorization", "token "+tk)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var prs []struct {
			Number   int     `json:"number"`
			MergedAt *string `json:"merged_at"`
		}
		err = json.NewDecoder(resp.Body).Decode(&prs)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(prs) != 2 || prs[0].Number != 2 || prs[0].MergedAt == nil || prs[1].MergedAt != nil {
			t.Fatalf("%s: %d %v %+v", tk, resp.StatusCode, err, prs)
		}
	}
	resp, err := http.Get("http://" + addr + "/_fake/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v", err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--token", "=login"},
		{"--app-id", "1"},
		{"--app-installation", "x=acme", "--app-id", "1", "--app-public-key", "k.pem"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	cfg, err := parseFlags([]string{"--token", "a", "--token", "b=previewd[bot]", "--app-id", "7", "--app-public-key", "k.pem", "--app-installation", "3=acme"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.tokens) != 2 || cfg.tokens[1].Login != "previewd[bot]" || cfg.opts.App.ID != 7 || cfg.opts.App.Installations[3] != "acme" {
		t.Fatalf("cfg = %+v", cfg)
	}
}
