package kube

import (
	"os"
	"path/filepath"
	"testing"
)

func TestChartDigest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "apiVersion: v2\nname: app\nversion: 0.1.0\n")
	write("templates/deployment.yaml", "kind: Deployment\n")
	a, err := ChartDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := ChartDigest(dir); a != b || len(a) != 24 {
		t.Fatalf("not stable: %q %q", a, b)
	}
	write("templates/deployment.yaml", "kind: Deployment\nspec: {}\n")
	b, _ := ChartDigest(dir)
	write("templates/deployment.yaml", "kind: Deployment\n")
	write("templates/service.yaml", "kind: Service\n")
	c, _ := ChartDigest(dir)
	if a == b || a == c || b == c {
		t.Errorf("a changed template or a new file does not change the digest: %s %s %s", a, b, c)
	}
	if _, err := ChartDigest(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing chart has a digest")
	}
}
