package kube

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestConfine(t *testing.T) {
	c := confine{namespace: "pr-web-1"}
	ok := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# a comment\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n  namespace: pr-web-1\n---\n"
	if out, err := c.Run(bytes.NewBufferString(ok)); err != nil || out.String() != ok {
		t.Fatalf("own namespace refused: %v", err)
	}
	for manifest, want := range map[string]string{
		"kind: Deployment\nmetadata:\n  name: miner\n  namespace: kube-system\n": "Deployment \"miner\" is in namespace kube-system, outside the preview's namespace pr-web-1",
		"kind: ClusterRoleBinding\nmetadata:\n  name: admin-for-me\n":            "ClusterRoleBinding \"admin-for-me\" is cluster-scoped",
		"kind: Namespace\nmetadata:\n  name: other\n":                            "Namespace \"other\" is cluster-scoped",
	} {
		_, err := c.Run(bytes.NewBufferString(ok + manifest))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", manifest, err, want)
		}
		// Helm wraps it; the cluster still reports it as the chart's fault.
		if !renderFailure(fmt.Errorf("upgrading release: error while running post render on files: %w", err)) {
			t.Errorf("%q: a wrapped confinement error is not a render failure", manifest)
		}
	}
}
