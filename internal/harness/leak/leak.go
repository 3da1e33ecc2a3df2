// Package leak checks that a test binary's tests left no goroutine running
// (go.uber.org/goleak), so that a loop, executor or watcher that outlives
// its context fails the package's tests. The TestMain helpers of the
// harness (pgtest.Main, testbed.Main, e2e.Main) call Check after m.Run.
package leak

import (
	"fmt"
	"os"

	"go.uber.org/goleak"
)

// ignored are goroutines that libraries start once per process and never
// stop; they are not leaks of previewd's code.
var ignored = []goleak.Option{
	// klog's periodic flush, started by client-go's init.
	goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	// OpenCensus/OpenTelemetry exporters some dependencies start at init.
	goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	// client-go caches one transport per client configuration for the
	// life of the process (transport.tlsCache): its client-certificate
	// rotation worker and its idle HTTP/2 connections to the API server
	// are never stopped, whatever the caller does.
	goleak.IgnoreAnyFunction("k8s.io/client-go/transport.(*dynamicClientCert).run"),
	goleak.IgnoreAnyFunction("k8s.io/client-go/transport.(*dynamicClientCert).processNextWorkItem"),
	// The poll that dynamicClientCert.run starts, and its ticker (previewd
	// itself does not use the deprecated wait.PollImmediateUntil).
	goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.PollImmediateUntil"),
	goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.PollImmediateUntilWithContext.poller.func1.1"),
	goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*delayingType[...]).waitingLoop"),
	goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
	// The OCI registry of the tests (internal/harness/ociregistry, the
	// distribution registry in process) starts an event broadcaster that
	// nothing in its API stops.
	goleak.IgnoreAnyFunction("github.com/docker/go-events.(*Broadcaster).run"),
}

// Check returns an error naming the goroutines still running.
func Check() error { return goleak.Find(ignored...) }

// After runs Check when the tests passed (code 0) and turns a leak into a
// failing exit code.
func After(code int) int {
	if code != 0 {
		return code
	}
	if err := Check(); err != nil {
		fmt.Fprintln(os.Stderr, "goroutines leaked by the tests:", err)
		return 1
	}
	return code
}
