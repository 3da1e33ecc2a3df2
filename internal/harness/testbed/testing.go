package testbed

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/harness/leak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnvKubeconfig names a running control plane (make cluster-up, or the one
// make test starts) that tests use instead of starting their own.
const EnvKubeconfig = "PREVIEWD_TEST_KUBECONFIG"

var shared struct {
	once    sync.Once
	cluster *Cluster
	err     error
}

// Main runs a package's tests and stops the control plane that Kube started
// for them, if any. Call it from TestMain: func TestMain(m *testing.M) { testbed.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopShared(code)
	// After the control plane's process watchers have ended.
	os.Exit(leak.After(code))
}

// StopShared stops the control plane Kube started, keeping its logs when
// code (the tests' exit code) is not 0. For a TestMain that combines
// harnesses.
func StopShared(code int) {
	if c := shared.cluster; c != nil && len(c.procs) > 0 {
		_ = c.Stop()
		if code == 0 {
			_ = c.Remove()
		} else {
			fmt.Fprintf(os.Stderr, "testbed: control-plane logs kept in %s\n", c.Dir)
		}
	}
}

// Kube returns the control plane shared by this test binary, starting it on
// first use (or connecting to $PREVIEWD_TEST_KUBECONFIG). Integration tests
// are skipped under -short.
func Kube(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local control plane (run without -short)")
	}
	shared.once.Do(func() {
		if kc := os.Getenv(EnvKubeconfig); kc != "" {
			shared.cluster, shared.err = Connect(kc)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared.cluster, shared.err = Start(ctx, Options{})
	})
	if shared.err != nil {
		t.Fatalf("starting the control plane: %v", shared.err)
	}
	return shared.cluster
}

// Namespace creates a fresh namespace for one test and deletes it (without
// waiting) when the test ends.
func Namespace(t testing.TB, c *Cluster) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-")
	ctx := context.Background()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-", Labels: map[string]string{"previewd.test/owner": "testbed"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating test namespace: %v", err)
	}
	t.Cleanup(func() {
		err := c.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("deleting test namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}
