// Package ociregistry starts a real OCI registry (the CNCF distribution
// registry, in process, in-memory storage, htpasswd authentication) on a
// loopback port for tests, and pushes Helm charts to it with Helm's own
// registry client.
package ociregistry

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"
)

// Registry is one running registry.
type Registry struct {
	// Host is host:port, for oci://Host/path references (plain HTTP).
	Host               string
	Username, Password string
	t                  testing.TB
}

// Start runs a registry that accepts username/password (basic auth) and
// stops it when the test ends.
func Start(t testing.TB, username, password string) *Registry {
	t.Helper()
	// The registry logs every request through logrus's standard logger.
	logrus.SetOutput(io.Discard)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", username, hash), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{
		"inmemory":    configuration.Parameters{},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "previewd-test", "path": htpasswd}}
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	ts := httptest.NewServer(app)
	t.Cleanup(func() {
		ts.Close()
		_ = app.Shutdown()
		cancel()
	})
	return &Registry{Host: ts.Listener.Addr().String(), Username: username, Password: password, t: t}
}

// Push packages the chart directory dir and pushes it as
// oci://Host/repository:<its version>; it returns the reference without
// the version.
func (r *Registry) Push(dir, repository string) string {
	r.t.Helper()
	ch, err := loader.Load(dir)
	if err != nil {
		r.t.Fatal(err)
	}
	tgz, err := chartutil.Save(ch, r.t.TempDir())
	if err != nil {
		r.t.Fatal(err)
	}
	data, err := os.ReadFile(tgz)
	if err != nil {
		r.t.Fatal(err)
	}
	rc, err := registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptBasicAuth(r.Username, r.Password),
		registry.ClientOptCredentialsFile(filepath.Join(r.t.TempDir(), "config.json")))
	if err != nil {
		r.t.Fatal(err)
	}
	ref := r.Host + "/" + repository
	if _, err := rc.Push(data, ref+":"+ch.Metadata.Version); err != nil {
		r.t.Fatalf("pushing %s to %s: %v", dir, ref, err)
	}
	return "oci://" + ref
}
