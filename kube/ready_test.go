package kube

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

const testNS = "pr-web-1"

type depState struct {
	replicas, updated, ready, available, total int32
	generation, observed                       int64
	revision                                   string
	conditions                                 []appsv1.DeploymentCondition
}

func deployment(name string, s depState) *appsv1.Deployment {
	if s.generation == 0 {
		s.generation = 1
	}
	if s.revision == "" {
		s.revision = "1"
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, UID: types.UID("dep-" + name), Generation: s.generation,
			Labels:      map[string]string{"app.kubernetes.io/instance": "preview"},
			Annotations: map[string]string{revisionAnnotation: s.revision},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(s.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: s.observed, Replicas: s.total, UpdatedReplicas: s.updated,
			ReadyReplicas: s.ready, AvailableReplicas: s.available, Conditions: s.conditions,
		},
	}
}

func replicaSet(dep, name, revision string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: testNS, UID: types.UID("rs-" + name),
		Labels:          map[string]string{"app": dep},
		Annotations:     map[string]string{revisionAnnotation: revision},
		OwnerReferences: []metav1.OwnerReference{{UID: types.UID("dep-" + dep), Controller: ptr.To(true), Kind: "Deployment", Name: dep}},
	}}
}

func pod(dep, rs, name string, cs corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, Labels: map[string]string{"app": dep},
			OwnerReferences: []metav1.OwnerReference{{UID: types.UID("rs-" + rs), Controller: ptr.To(true), Kind: "ReplicaSet", Name: rs}},
		},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{cs}},
	}
}

func waiting(container, reason, msg string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: container, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
}

var (
	readyState   = depState{replicas: 1, updated: 1, ready: 1, available: 1, total: 1, observed: 1}
	pendingState = depState{replicas: 1, updated: 1, ready: 0, available: 0, total: 1, observed: 1}
)

// logRecorder answers pod log requests and records their options.
type logRecorder struct {
	mu   sync.Mutex
	opts []*corev1.PodLogOptions
	body string
	err  error
}

func (l *logRecorder) install(cs *fake.Clientset) {
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "log" {
			return false, nil, nil
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.opts = append(l.opts, a.(k8stesting.GenericActionImpl).Value.(*corev1.PodLogOptions))
		if l.err != nil {
			return true, nil, l.err
		}
		return true, &runtime.Unknown{Raw: []byte(l.body)}, nil
	})
}

func fastPoll() ReadyOption { return WithPoll(5 * time.Millisecond) }

func TestWaitReadyReady(t *testing.T) {
	cs := fake.NewClientset(deployment("web", readyState), deployment("api", readyState))
	start := time.Now()
	if err := WaitReady(context.Background(), cs, testNS, "", time.Second, fastPoll()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("took %s", d)
	}
	// No Deployments at all: nothing to wait for.
	if err := WaitReady(context.Background(), fake.NewClientset(), testNS, "", time.Second, fastPoll()); err != nil {
		t.Errorf("empty namespace: %v", err)
	}
}

func TestWaitReadyRules(t *testing.T) {
	tests := []struct {
		name  string
		state depState
	}{
		{"generation not observed", depState{replicas: 1, updated: 1, ready: 1, available: 1, total: 1, generation: 2, observed: 1}},
		{"not updated", depState{replicas: 1, updated: 0, ready: 1, available: 1, total: 1, observed: 1}},
		{"not ready", pendingState},
		{"not available", depState{replicas: 1, updated: 1, ready: 1, available: 0, total: 1, observed: 1}},
		{"old replicas left", depState{replicas: 2, updated: 2, ready: 2, available: 2, total: 3, observed: 1}},
		{"scaled up", depState{replicas: 3, updated: 1, ready: 1, available: 1, total: 1, observed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(deployment("web", tt.state))
			err := WaitReady(context.Background(), cs, testNS, "", 50*time.Millisecond, fastPoll())
			var nre *NotReadyError
			if !errors.As(err, &nre) || nre.Reason != ReasonTimeout || nre.Deployment != "web" {
				t.Fatalf("WaitReady = %v, want a Timeout NotReadyError", err)
			}
			if !strings.Contains(nre.Message, "not ready after 50ms") {
				t.Errorf("message %q", nre.Message)
			}
		})
	}
}

func TestWaitReadyBecomesReady(t *testing.T) {
	cs := fake.NewClientset(deployment("web", pendingState))
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = cs.AppsV1().Deployments(testNS).UpdateStatus(context.Background(), deployment("web", readyState), metav1.UpdateOptions{})
	}()
	if err := WaitReady(context.Background(), cs, testNS, "", 5*time.Second, fastPoll()); err != nil {
		t.Fatal(err)
	}
}

func TestWaitReadySelector(t *testing.T) {
	other := deployment("other", pendingState)
	other.Labels = map[string]string{"app.kubernetes.io/instance": "someone-else"}
	cs := fake.NewClientset(deployment("web", readyState), other)
	if err := WaitReady(context.Background(), cs, testNS, "app.kubernetes.io/instance=preview", time.Second, fastPoll()); err != nil {
		t.Errorf("selector ignored: %v", err)
	}
	if err := WaitReady(context.Background(), cs, testNS, "", 30*time.Millisecond, fastPoll()); err == nil {
		t.Error(`selector "" should include every Deployment`)
	}
}

func TestWaitReadyFailsFast(t *testing.T) {
	crash := waiting("app", ReasonCrashLoopBackOff, "back-off 40s restarting failed container=app")
	crash.RestartCount = 3
	crash.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}
	tests := []struct {
		name         string
		cs           corev1.ContainerStatus
		wantReason   string
		wantPrevious bool
		wantInMsg    string
	}{
		{"image pull backoff", waiting("app", ReasonImagePullBackOff, `Back-off pulling image "x"`), ReasonImagePullBackOff, false, "Back-off pulling image"},
		{"err image pull", waiting("app", ReasonErrImagePull, "not found"), ReasonErrImagePull, false, "not found"},
		{"crash loop", crash, ReasonCrashLoopBackOff, true, "last exit code 1, Error, 3 restarts"},
		{"invalid image", waiting("app", ReasonInvalidImageName, "bad"), ReasonInvalidImageName, false, "bad"},
		{"config error", waiting("app", ReasonCreateContainerConfigError, `secret "db" not found`), ReasonCreateContainerConfigError, false, "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(
				deployment("web", pendingState),
				replicaSet("web", "web-1", "1"),
				pod("web", "web-1", "web-1-abc", tt.cs),
			)
			logs := &logRecorder{body: "line 1\nline 2\n"}
			logs.install(cs)
			start := time.Now()
			err := WaitReady(context.Background(), cs, testNS, "", time.Minute, fastPoll())
			var nre *NotReadyError
			if !errors.As(err, &nre) {
				t.Fatalf("WaitReady = %v, want *NotReadyError", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("not fast: %s", d)
			}
			if nre.Reason != tt.wantReason || nre.Deployment != "web" || nre.Pod != "web-1-abc" || nre.Container != "app" {
				t.Errorf("got %+v", nre)
			}
			if !strings.Contains(nre.Message, tt.wantInMsg) {
				t.Errorf("message %q lacks %q", nre.Message, tt.wantInMsg)
			}
			if nre.Logs != "line 1\nline 2" {
				t.Errorf("logs %q", nre.Logs)
			}
			if len(logs.opts) != 1 {
				t.Fatalf("%d log requests", len(logs.opts))
			}
			o := logs.opts[0]
			if o.Container != "app" || o.Previous != tt.wantPrevious || o.TailLines == nil || *o.TailLines != 40 {
				t.Errorf("log options %+v", o)
			}
			if msg := nre.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.wantReason) || !strings.Contains(msg, "web-1-abc") {
				t.Errorf("Error() = %q", msg)
			}
		})
	}
}

func TestWaitReadyIgnoresOldReplicaSet(t *testing.T) {
	// The previous version crash-loops; the new one is rolling out. The old
	// pods must not fail the new rollout.
	crash := waiting("app", ReasonCrashLoopBackOff, "back-off")
	st := pendingState
	st.revision = "2"
	cs := fake.NewClientset(
		deployment("web", st),
		replicaSet("web", "web-1", "1"),
		replicaSet("web", "web-2", "2"),
		pod("web", "web-1", "web-1-old", crash),
		pod("web", "web-2", "web-2-new", corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}),
	)
	err := WaitReady(context.Background(), cs, testNS, "", 50*time.Millisecond, fastPoll())
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonTimeout {
		t.Fatalf("WaitReady = %v, want Timeout (old pods ignored)", err)
	}
}

func TestWaitReadyWaitsForTheControllerBeforeBlamingPods(t *testing.T) {
	// A fix was just applied (generation 2) but the controller has not seen
	// it: the revision annotation still names the failing rollout.
	st := pendingState
	st.generation, st.observed = 2, 1
	cs := fake.NewClientset(
		deployment("web", st),
		replicaSet("web", "web-1", "1"),
		pod("web", "web-1", "web-1-bad", waiting("app", ReasonImagePullBackOff, "x")),
	)
	err := WaitReady(context.Background(), cs, testNS, "", 50*time.Millisecond, fastPoll())
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonTimeout {
		t.Fatalf("WaitReady = %v, want Timeout", err)
	}
}

func TestWaitReadyIgnoresTerminatingPods(t *testing.T) {
	p := pod("web", "web-1", "web-1-abc", waiting("app", ReasonImagePullBackOff, "x"))
	p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	p.Finalizers = []string{"x"}
	cs := fake.NewClientset(deployment("web", pendingState), replicaSet("web", "web-1", "1"), p)
	err := WaitReady(context.Background(), cs, testNS, "", 50*time.Millisecond, fastPoll())
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonTimeout {
		t.Fatalf("WaitReady = %v, want Timeout", err)
	}
}

func TestWaitReadyProgressDeadline(t *testing.T) {
	pde := []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
		Reason: ReasonProgressDeadlineExceeded, Message: `ReplicaSet "web-1" has timed out progressing.`}}
	st := pendingState
	st.conditions = pde
	cs := fake.NewClientset(deployment("web", st))
	err := WaitReady(context.Background(), cs, testNS, "", time.Minute, fastPoll())
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonProgressDeadlineExceeded || !strings.Contains(nre.Message, "timed out progressing") {
		t.Fatalf("WaitReady = %v", err)
	}
	if nre.Logs != "" {
		t.Errorf("no container, no logs: %q", nre.Logs)
	}

	// With a failing container, the error points at it.
	cs = fake.NewClientset(deployment("web", st), replicaSet("web", "web-1", "1"),
		pod("web", "web-1", "web-1-abc", waiting("app", ReasonImagePullBackOff, "pull")))
	err = WaitReady(context.Background(), cs, testNS, "", time.Minute, fastPoll())
	if !errors.As(err, &nre) || nre.Reason != ReasonProgressDeadlineExceeded || nre.Container != "app" || nre.Logs != "fake logs" {
		t.Fatalf("WaitReady = %+v", nre)
	}

	// A condition left over from the previous generation is not trusted.
	st.generation, st.observed = 2, 1
	cs = fake.NewClientset(deployment("web", st))
	err = WaitReady(context.Background(), cs, testNS, "", 50*time.Millisecond, fastPoll())
	if !errors.As(err, &nre) || nre.Reason != ReasonTimeout {
		t.Fatalf("stale condition: %v", err)
	}
}

func TestWaitReadyLogsUnavailableAndRedacted(t *testing.T) {
	cs := fake.NewClientset(deployment("web", pendingState), replicaSet("web", "web-1", "1"),
		pod("web", "web-1", "web-1-abc", waiting("app", ReasonErrImagePull, "token=s3cret denied")))
	logs := &logRecorder{err: errors.New("no kubelet on node kwok-node-0")}
	logs.install(cs)
	redact := func(s string) string { return strings.ReplaceAll(s, "s3cret", "[redacted]") }
	err := WaitReady(context.Background(), cs, testNS, "", time.Minute, fastPoll(), WithRedact(redact))
	var nre *NotReadyError
	if !errors.As(err, &nre) {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nre.Logs, "logs unavailable: ") || !strings.Contains(nre.Logs, "no kubelet") {
		t.Errorf("logs %q", nre.Logs)
	}
	if strings.Contains(nre.Error(), "s3cret") || !strings.Contains(nre.Message, "[redacted]") {
		t.Errorf("not redacted: %q", nre.Error())
	}
}

func TestWaitReadyTrimsLogs(t *testing.T) {
	var b strings.Builder
	for range 200 {
		b.WriteString(strings.Repeat("x", 99) + "\n")
	}
	cs := fake.NewClientset(deployment("web", pendingState), replicaSet("web", "web-1", "1"),
		pod("web", "web-1", "web-1-abc", waiting("app", ReasonImagePullBackOff, "")))
	(&logRecorder{body: b.String()}).install(cs)
	err := WaitReady(context.Background(), cs, testNS, "", time.Minute, fastPoll())
	var nre *NotReadyError
	if !errors.As(err, &nre) {
		t.Fatal(err)
	}
	if len(nre.Logs) > 4000 || !strings.HasPrefix(nre.Logs, "…\n") || !strings.HasSuffix(nre.Logs, "x") {
		t.Errorf("logs: %d bytes, %q…", len(nre.Logs), nre.Logs[:20])
	}
}

func TestTail(t *testing.T) {
	if got := tail("a\nb\n", 10); got != "a\nb" {
		t.Errorf("%q", got)
	}
	s := strings.Repeat("é", 3000) // 6000 bytes, no newline
	got := tail(s, 4000)
	if len(got) > 4000 || !strings.HasPrefix(got, "…\n") || strings.ContainsRune(got, '\uFFFD') {
		t.Errorf("tail cut a rune: %d bytes", len(got))
	}
	if got := truncate("héllo", 2); got != "h…" {
		t.Errorf("truncate = %q", got)
	}
}

func TestWaitReadyContext(t *testing.T) {
	cs := fake.NewClientset(deployment("web", pendingState))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := WaitReady(ctx, cs, testNS, "", time.Minute, fastPoll())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady = %v, want the context's error", err)
	}
	var nre *NotReadyError
	if errors.As(err, &nre) {
		t.Error("a cancelled wait is not a NotReadyError")
	}
}

// TestWaitReadyJobsAndDaemonSets: a failed Job fails the wait with its
// condition's reason; a DaemonSet still rolling out keeps it waiting until
// the timeout, naming it.
func TestWaitReadyJobsAndDaemonSets(t *testing.T) {
	failed := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: testNS, UID: "job-1"},
		Status: batchv1.JobStatus{Failed: 7, Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
			Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}}}
	err := WaitReady(context.Background(), fake.NewClientset(failed), testNS, "", time.Second, WithPoll(10*time.Millisecond))
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonFailed || nre.Kind != "job" || !strings.Contains(nre.Message, "BackoffLimitExceeded") {
		t.Fatalf("failed Job: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "job migrate not ready: Failed") {
		t.Errorf("message: %q", err)
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: testNS, UID: "ds-1", Generation: 1},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 1, NumberAvailable: 1, NumberReady: 1}}
	err = WaitReady(context.Background(), fake.NewClientset(ds), testNS, "", 100*time.Millisecond, WithPoll(10*time.Millisecond))
	if !errors.As(err, &nre) || nre.Reason != ReasonTimeout || nre.Kind != "daemonset" || nre.Deployment != "agent" {
		t.Fatalf("rolling DaemonSet: %v", err)
	}
	done := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "seed", Namespace: testNS, UID: "job-2"},
		Status: batchv1.JobStatus{Succeeded: 1, Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}}
	if err := WaitReady(context.Background(), fake.NewClientset(done), testNS, "", time.Second, WithPoll(10*time.Millisecond)); err != nil {
		t.Errorf("completed Job: %v", err)
	}
}
