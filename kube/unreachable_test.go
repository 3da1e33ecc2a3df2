package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestUnreachable(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "https://127.0.0.1:6443/api/v1/namespaces", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	gr := schema.GroupResource{Resource: "deployments"}
	cases := []struct {
		err  error
		want bool
	}{
		{refused, true},
		{fmt.Errorf("failed to create resource: %w", refused), true},
		{errors.New(`Post "https://127.0.0.1:6443/apis/apps/v1/namespaces/pr-web-1/deployments": dial tcp 127.0.0.1:6443: connect: connection refused`), true},
		{errors.New("read tcp 127.0.0.1:5555->127.0.0.1:6443: read: connection reset by peer"), true},
		{fmt.Errorf("x: %w", syscall.ECONNRESET), true},
		{apierrors.NewServiceUnavailable("etcd is down"), true},
		{apierrors.NewServerTimeout(gr, "create", 1), true},
		{apierrors.NewTooManyRequests("slow down", 1), true},
		{errors.New("http2: client connection lost"), true},
		// Answers about the preview, and the operation's own deadline.
		{nil, false},
		{apierrors.NewForbidden(gr, "web", errors.New(`pods "web" is forbidden: violates PodSecurity "restricted:latest"`)), false},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "Deployment"}, "web", nil), false},
		{errors.New(`template: preview/templates/x.yaml:1: function "nosuchfunction" not defined`), false},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), false},
		{errors.New("helm operation timed out after 2m0s: i/o timeout"), false},
		{context.Canceled, false},
		{errors.New(`Internal error occurred: failed calling webhook "validate.example.com": Post "https://webhook.svc:443/validate": dial tcp 10.0.0.9:443: connect: connection refused`), false},
	}
	for _, c := range cases {
		if got := Unreachable(c.err); got != c.want {
			t.Errorf("Unreachable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
