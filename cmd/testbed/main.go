// Command testbed starts and stops previewd's local Kubernetes control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) for
// the demo, benchmarks and `make cluster-up`.
//
//	testbed up   --dir .testbed   # prints the KUBECONFIG to use
//	testbed down --dir .testbed
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/previewd/previewd/internal/harness/testbed"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbed up|down [--dir DIR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".testbed", "directory for certificates, data, logs and pids")
	_ = fs.Parse(os.Args[2:])
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	switch os.Args[1] {
	case "up":
		if _, err := os.Stat(filepath.Join(abs, "pids")); err == nil {
			if c, err := testbed.Connect(filepath.Join(abs, "kubeconfig")); err == nil {
				if _, err := c.Client.Discovery().ServerVersion(); err == nil {
					fmt.Println("export KUBECONFIG=" + c.Kubeconfig)
					return
				}
			}
			_ = testbed.StopDir(abs)
		}
		_ = os.RemoveAll(abs)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := testbed.Start(ctx, testbed.Options{Dir: abs, Detach: true, Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "testbed: "+f+"\n", a...)
		}})
		if err != nil {
			fail(err)
		}
		fmt.Println("export KUBECONFIG=" + c.Kubeconfig)
	case "down":
		if err := testbed.StopDir(abs); err != nil {
			fail(err)
		}
		_ = os.RemoveAll(abs)
		fmt.Fprintln(os.Stderr, "testbed: stopped")
	default:
		fmt.Fprintln(os.Stderr, "usage: testbed up|down [--dir DIR]")
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "testbed:", err)
	os.Exit(1)
}
