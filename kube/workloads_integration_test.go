package kube

import (
	"context"
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/previewd/previewd/internal/harness/testbed"
)

// TestWaitReadyEveryKind: on the test bed, a StatefulSet and a Job (which
// kwok runs to completion) are waited for like a Deployment; a
// StatefulSet whose container crash-loops fails fast with the reason, the
// kind and the pod.
func TestWaitReadyEveryKind(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test bed")
	}
	c := testbed.Kube(t)
	ctx := context.Background()
	ns := testbed.Namespace(t, c)
	podSpec := func(image string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db", "kind-test": ns}},
			Spec: corev1.PodSpec{RestartPolicy: restart, NodeName: testbed.NodeName,
				Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
	}
	sts := func(name, image string) *appsv1.StatefulSet {
		tpl := podSpec(image, corev1.RestartPolicyAlways)
		tpl.Labels["app"] = name
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"set": name}},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(int32(1)), ServiceName: name,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: tpl}}
	}
	if _, err := c.Client.AppsV1().StatefulSets(ns).Create(ctx, sts("db", "registry.example.com/db:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Labels: map[string]string{"set": "migrate"}},
		Spec: batchv1.JobSpec{Template: podSpec("registry.example.com/migrate:1", corev1.RestartPolicyNever)}}
	job.Spec.Template.Labels = map[string]string{"job": "migrate"}
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := WaitReady(ctx, c.Client, ns, "", time.Minute); err != nil {
		t.Fatalf("a Ready StatefulSet and a completed Job: %v", err)
	}
	t.Logf("statefulset Ready and job complete after %s", time.Since(start).Round(time.Millisecond))
	got, err := c.Client.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
	if err != nil || got.Status.Succeeded != 1 {
		t.Errorf("WaitReady returned before the Job completed: %v %+v", err, got.Status)
	}

	if _, err := c.Client.AppsV1().StatefulSets(ns).Create(ctx, sts("cache", testbed.FailCrashLoop+"/cache:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = WaitReady(ctx, c.Client, ns, "set=cache", time.Minute)
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonCrashLoopBackOff || nre.Kind != "statefulset" || nre.Deployment != "cache" || nre.Pod != "cache-0" {
		t.Fatalf("crash-looping StatefulSet: %v (%+v)", err, nre)
	}
	if time.Since(start) > 45*time.Second {
		t.Errorf("not fast: %s", time.Since(start))
	}
	t.Logf("crash loop reported: %v", err)
}
