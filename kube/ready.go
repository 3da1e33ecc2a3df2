package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Reasons of a NotReadyError.
const (
	ReasonProgressDeadlineExceeded   = "ProgressDeadlineExceeded"
	ReasonImagePullBackOff           = "ImagePullBackOff"
	ReasonErrImagePull               = "ErrImagePull"
	ReasonCrashLoopBackOff           = "CrashLoopBackOff"
	ReasonInvalidImageName           = "InvalidImageName"
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	ReasonTimeout                    = "Timeout"
	// ReasonFailedCreate: the API server refused the workload's pods
	// (Pod Security, a ResourceQuota, a LimitRange, an admission policy);
	// Message quotes its answer.
	ReasonFailedCreate = "FailedCreate"
	// ReasonFailed: kstatus computed Failed for a StatefulSet, DaemonSet
	// or Job (a Job past its backoffLimit, ...).
	ReasonFailed = "Failed"
)

// failingWaits are container waiting reasons that will not resolve on
// their own: WaitReady reports them at once.
var failingWaits = map[string]bool{
	ReasonImagePullBackOff:           true,
	ReasonErrImagePull:               true,
	ReasonCrashLoopBackOff:           true,
	ReasonInvalidImageName:           true,
	ReasonCreateContainerConfigError: true,
}

const (
	defaultReadyTimeout = 3 * time.Minute
	defaultLogLines     = 40
	defaultLogBytes     = 4000
	logFetchTimeout     = 5 * time.Second
	revisionAnnotation  = "deployment.kubernetes.io/revision"
)

// NotReadyError says why a preview's workloads did not become ready.
type NotReadyError struct {
	// Reason is one of the Reason* constants.
	Reason string
	// Kind is the workload's kind in lower case (deployment, statefulset,
	// daemonset, job); "" means deployment.
	Kind string
	// Deployment is the name of the workload (of kind Kind).
	Deployment string
	// Pod and Container name the failing container, when one was found.
	Pod       string
	Container string
	// Image is the failing container's image (from the pod's spec).
	Image string
	// Message is the Kubernetes message (condition or container state),
	// or for Timeout a summary of the replica counts.
	Message string
	// Logs are the last lines of the failing container (the previous
	// instance for a crash loop), at most 4,000 characters, or
	// "logs unavailable: <why>". Empty when no container was involved.
	Logs string
	// LastAPIError is, for Timeout, the error of the last look when it
	// failed (the API server could not be asked at the deadline).
	LastAPIError error
}

func (e *NotReadyError) Error() string {
	var b strings.Builder
	kind := e.Kind
	if kind == "" {
		kind = "deployment"
	}
	if e.Deployment == "" {
		b.WriteString("workloads") // none was found (the lists failed)
	} else {
		b.WriteString(kind + " " + e.Deployment)
	}
	b.WriteString(" not ready: ")
	b.WriteString(e.Reason)
	if e.Container != "" {
		fmt.Fprintf(&b, " (container %s in pod %s)", e.Container, e.Pod)
	} else if e.Pod != "" {
		fmt.Fprintf(&b, " (pod %s)", e.Pod)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Message))
	}
	return b.String()
}

// ReadyOption tunes WaitReady.
type ReadyOption func(*readyConfig)

type readyConfig struct {
	poll   time.Duration
	redact func(string) string
	lines  int64
}

// WithRedact applies f to the Message and Logs of a NotReadyError (the
// caller removes secrets before they reach a PR comment or a log).
func WithRedact(f func(string) string) ReadyOption {
	return func(c *readyConfig) { c.redact = f }
}

// WithPoll sets how often WaitReady looks (default 500 ms).
func WithPoll(d time.Duration) ReadyOption {
	return func(c *readyConfig) { c.poll = d }
}

// WaitReady waits until every workload in namespace matching selector is
// Ready. For a Deployment that is the rule below; a StatefulSet, DaemonSet
// or Job is Ready when kstatus (the library Helm 4's own wait uses) computes
// Current for it (for a Job: complete), and fails when it computes Failed.
// Pods of any of them waiting in a failing reason fail at once, as for a
// Deployment.
//
// A Deployment in namespace matching selector
// (a label selector such as app.kubernetes.io/instance=preview; "" means
// all) is rolled out: observedGeneration is current, and the updated,
// ready, available and total replica counts all equal spec.replicas (no
// old replicas left). A namespace without matching Deployments is ready.
//
// It fails fast, long before timeout, with a *NotReadyError when a
// Deployment's Progressing condition says ProgressDeadlineExceeded or a
// container of the current rollout waits in ImagePullBackOff, ErrImagePull,
// CrashLoopBackOff, InvalidImageName or CreateContainerConfigError; the
// error carries the container's last 40 log lines. After timeout (default
// 3m) the NotReadyError's Reason is Timeout. If ctx ends first, ctx's error
// is returned.
func WaitReady(ctx context.Context, client kubernetes.Interface, namespace, selector string, timeout time.Duration, opts ...ReadyOption) error {
	cfg := readyConfig{poll: defaultPoll, redact: func(s string) string { return s }, lines: defaultLogLines}
	for _, o := range opts {
		o(&cfg)
	}
	if timeout <= 0 {
		timeout = defaultReadyTimeout
	}
	deadline := time.Now().Add(timeout)
	var last *NotReadyError
	var lastErr error
	for {
		pending, fail, err := checkReady(ctx, client, namespace, selector)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lastErr = err // transient API error: try again until the deadline
		case fail != nil:
			if fail.Pod != "" && fail.Container != "" {
				fail.Logs = fetchLogs(ctx, client, namespace, fail.Pod, fail.Container, fail.Reason == ReasonCrashLoopBackOff, cfg.lines)
			}
			fail.Message = cfg.redact(fail.Message)
			fail.Logs = cfg.redact(fail.Logs)
			return fail
		case pending == nil:
			return nil
		default:
			last, lastErr = pending, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		if err := sleep(ctx, min(cfg.poll, wait)); err != nil {
			return err
		}
	}
	if last == nil {
		last = &NotReadyError{Reason: ReasonTimeout}
	}
	last.Reason = ReasonTimeout
	msg := fmt.Sprintf("not ready after %s", timeout)
	if last.Message != "" {
		msg += ": " + last.Message
	}
	if lastErr != nil {
		msg += fmt.Sprintf(" (last API error: %v)", lastErr)
	}
	last.Message, last.LastAPIError = cfg.redact(msg), lastErr
	return last
}

// checkReady looks once. It returns (nil, nil, nil) when everything is
// ready, a pending description (Reason unset) when not yet, or a failure.
func checkReady(ctx context.Context, client kubernetes.Interface, namespace, selector string) (pending, fail *NotReadyError, err error) {
	deps, err := client.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, nil, fmt.Errorf("listing deployments in %s: %w", namespace, err)
	}
	items := deps.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	for i := range items {
		d := &items[i]
		ok, summary := deploymentReady(d)
		if ok {
			continue
		}
		if d.Status.ObservedGeneration >= d.Generation {
			for _, c := range d.Status.Conditions {
				if c.Type == appsv1.DeploymentProgressing && c.Reason == ReasonProgressDeadlineExceeded {
					fail = &NotReadyError{Reason: ReasonProgressDeadlineExceeded, Deployment: d.Name, Message: c.Message}
				}
			}
			for _, c := range d.Status.Conditions {
				// The pods were refused by the API server (the preview
				// namespace's fence, or any admission): no container
				// will explain it, and waiting will not change it.
				// "status unknown for quota": the quota controller has not
				// counted a new quota yet; the ReplicaSet retries.
				if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue && !strings.Contains(c.Message, "status unknown for quota") {
					return nil, &NotReadyError{Reason: ReasonFailedCreate, Deployment: d.Name, Message: c.Message}, nil
				}
			}
		}
		pod, container, image, reason, msg, err := failingContainer(ctx, client, d)
		if err != nil {
			return nil, nil, err
		}
		if reason != "" {
			if fail != nil {
				// Keep ProgressDeadlineExceeded as the reason, but point at
				// the container that explains it.
				fail.Pod, fail.Container, fail.Image = pod, container, image
				fail.Message += "; container " + container + ": " + reason + ": " + msg
				return nil, fail, nil
			}
			return nil, &NotReadyError{Reason: reason, Deployment: d.Name, Pod: pod, Container: container, Image: image, Message: msg}, nil
		}
		if fail != nil {
			return nil, fail, nil
		}
		if pending == nil {
			pending = &NotReadyError{Deployment: d.Name, Message: summary}
		}
	}
	others, err := otherWorkloads(ctx, client, namespace, selector)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range others {
		res, err := kstatus.Compute(w.obj)
		if err != nil {
			return nil, nil, fmt.Errorf("computing the status of %s %s: %w", w.kind, w.name, err)
		}
		if w.job != nil {
			// kstatus calls a started Job Current; a preview waits for
			// its Jobs (a migration) to complete, as helm --wait-for-jobs.
			res = jobStatus(w.job)
		}
		if res.Status == kstatus.CurrentStatus {
			continue
		}
		pod, container, image, reason, msg, err := failingPod(ctx, client, namespace, w.name, w.selector, w.uid)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case reason != "":
			return nil, &NotReadyError{Reason: reason, Kind: w.kind, Deployment: w.name, Pod: pod, Container: container, Image: image, Message: msg}, nil
		case res.Status == kstatus.FailedStatus:
			return nil, &NotReadyError{Reason: ReasonFailed, Kind: w.kind, Deployment: w.name, Message: res.Message}, nil
		case pending == nil:
			pending = &NotReadyError{Kind: w.kind, Deployment: w.name, Message: res.Message}
		}
	}
	return pending, nil, nil
}

// workload is a StatefulSet, DaemonSet or Job of the preview, for kstatus.
type workload struct {
	kind, name string
	uid        types.UID
	selector   *metav1.LabelSelector
	obj        *unstructured.Unstructured
	job        *batchv1.Job // set for a Job
}

// jobStatus is Current once the Job completed, Failed once it failed,
// InProgress before.
func jobStatus(j *batchv1.Job) *kstatus.Result {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return &kstatus.Result{Status: kstatus.CurrentStatus, Message: "job completed"}
		case batchv1.JobFailed:
			return &kstatus.Result{Status: kstatus.FailedStatus, Message: strings.TrimSpace(c.Reason + ": " + c.Message)}
		}
	}
	return &kstatus.Result{Status: kstatus.InProgressStatus, Message: fmt.Sprintf("job not complete: %d active, %d succeeded, %d failed",
		j.Status.Active, j.Status.Succeeded, j.Status.Failed)}
}

// otherWorkloads lists the namespace's StatefulSets, DaemonSets and Jobs
// (Deployments have their own, finer rule above), sorted by kind and name.
func otherWorkloads(ctx context.Context, client kubernetes.Interface, namespace, selector string) ([]workload, error) {
	opts := metav1.ListOptions{LabelSelector: selector}
	var out []workload
	add := func(kind string, o runtime.Object, meta metav1.Object, sel *metav1.LabelSelector) error {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return err
		}
		out = append(out, workload{kind: kind, name: meta.GetName(), uid: meta.GetUID(), selector: sel, obj: &unstructured.Unstructured{Object: u}})
		return nil
	}
	sts, err := client.AppsV1().StatefulSets(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing statefulsets in %s: %w", namespace, err)
	}
	for i := range sts.Items {
		s := &sts.Items[i]
		s.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("StatefulSet"))
		if err := add("statefulset", s, s, s.Spec.Selector); err != nil {
			return nil, err
		}
	}
	dss, err := client.AppsV1().DaemonSets(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing daemonsets in %s: %w", namespace, err)
	}
	for i := range dss.Items {
		d := &dss.Items[i]
		d.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("DaemonSet"))
		if err := add("daemonset", d, d, d.Spec.Selector); err != nil {
			return nil, err
		}
	}
	jobs, err := client.BatchV1().Jobs(namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing jobs in %s: %w", namespace, err)
	}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		j.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("Job"))
		if err := add("job", j, j, j.Spec.Selector); err != nil {
			return nil, err
		}
		out[len(out)-1].job = j
	}
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].kind < out[j].kind || (out[i].kind == out[j].kind && out[i].name < out[j].name)
	})
	return out, nil
}

// deploymentReady applies the rollout rule and summarizes the counts.
func deploymentReady(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	if s.ObservedGeneration < d.Generation {
		return false, fmt.Sprintf("generation %d not yet observed (observed %d)", d.Generation, s.ObservedGeneration)
	}
	summary := fmt.Sprintf("%d wanted, %d updated, %d ready, %d available, %d total replicas",
		want, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, s.Replicas)
	ok := s.UpdatedReplicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want && s.Replicas == want
	return ok, summary
}

// failingContainer finds a container of the Deployment's current rollout
// (pods of the ReplicaSet whose revision matches the Deployment's) that
// waits for a reason in failingWaits. Old ReplicaSets are ignored: a crash
// loop of the previous version must not fail the new rollout.
func failingContainer(ctx context.Context, client kubernetes.Interface, d *appsv1.Deployment) (pod, container, image, reason, msg string, err error) {
	// Until the controller has observed the latest spec, the revision
	// annotation may still name the previous (perhaps failing) rollout.
	rev := d.Annotations[revisionAnnotation]
	if rev == "" || d.Spec.Selector == nil || d.Status.ObservedGeneration < d.Generation {
		return "", "", "", "", "", nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return "", "", "", "", "", fmt.Errorf("deployment %s selector: %w", d.Name, err)
	}
	rsList, err := client.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "", "", "", "", "", fmt.Errorf("listing replica sets of %s: %w", d.Name, err)
	}
	var current types.UID
	for i := range rsList.Items {
		rs := &rsList.Items[i]
		if ownedBy(rs.OwnerReferences, d.UID) && rs.Annotations[revisionAnnotation] == rev {
			current = rs.UID
		}
	}
	if current == "" {
		return "", "", "", "", "", nil
	}
	return failingPod(ctx, client, d.Namespace, d.Name, d.Spec.Selector, current)
}

// failingPod finds a container of a pod controlled by owner (matching sel)
// that waits for a reason in failingWaits.
func failingPod(ctx context.Context, client kubernetes.Interface, namespace, of string, selector *metav1.LabelSelector, owner types.UID) (pod, container, image, reason, msg string, err error) {
	if selector == nil || owner == "" {
		return "", "", "", "", "", nil
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return "", "", "", "", "", fmt.Errorf("%s selector: %w", of, err)
	}
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "", "", "", "", "", fmt.Errorf("listing pods of %s: %w", of, err)
	}
	items := pods.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	for i := range items {
		p := &items[i]
		if p.DeletionTimestamp != nil || !ownedBy(p.OwnerReferences, owner) {
			continue
		}
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			w := cs.State.Waiting
			if w == nil || !failingWaits[w.Reason] {
				continue
			}
			m := w.Message
			if t := cs.LastTerminationState.Terminated; t != nil && w.Reason == ReasonCrashLoopBackOff {
				m += fmt.Sprintf(" (last exit code %d", t.ExitCode)
				if t.Reason != "" {
					m += ", " + t.Reason
				}
				m += fmt.Sprintf(", %d restarts)", cs.RestartCount)
			}
			return p.Name, cs.Name, specImage(p, cs.Name, cs.Image), w.Reason, strings.TrimSpace(m), nil
		}
	}
	return "", "", "", "", "", nil
}

// specImage is the image the pod's spec names for container name (the
// status may report a resolved or empty image while pulling).
func specImage(p *corev1.Pod, name, fallback string) string {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == name {
			return c.Image
		}
	}
	return fallback
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// fetchLogs returns the last lines of a container's log (of its previous
// instance if previous), trimmed to 4,000 characters, or a note saying why
// they are unavailable. It never waits longer than 5 s.
func fetchLogs(ctx context.Context, client kubernetes.Interface, namespace, pod, container string, previous bool, lines int64) string {
	ctx, cancel := context.WithTimeout(ctx, logFetchTimeout)
	defer cancel()
	limit := int64(64 << 10)
	raw, err := client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container:  container,
		Previous:   previous,
		TailLines:  &lines,
		LimitBytes: &limit,
	}).DoRaw(ctx)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "logs unavailable: no answer within " + logFetchTimeout.String()
		}
		return "logs unavailable: " + truncate(oneLine(err.Error()), 300)
	}
	return tail(string(raw), defaultLogBytes)
}

// tail keeps the last n bytes of s, starting at a line boundary when
// possible and never inside a UTF-8 sequence.
func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if len(s) <= n {
		return s
	}
	const mark = "…\n"
	cut := s[len(s)-(n-len(mark)):]
	if i := strings.IndexByte(cut, '\n'); i >= 0 && i < len(cut)-1 {
		cut = cut[i+1:]
	}
	for len(cut) > 0 && !utf8.RuneStart(cut[0]) {
		cut = cut[1:]
	}
	return mark + cut
}

// truncate shortens s to at most n bytes plus "…", at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
