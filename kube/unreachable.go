package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// unreachableText are the messages of an API server that is down or out of
// reach, for errors that Helm passes on as text only.
var unreachableText = []string{
	"connection refused", "connection reset by peer", "broken pipe", "no route to host", "i/o timeout",
	"TLS handshake timeout", "http2: client connection lost", "http2: server sent GOAWAY", "unexpected EOF",
	"the server is currently unable to handle the request", "the server was unable to return a response in the time allotted",
}

// Unreachable reports an error that says the API server could not be
// reached or could not answer (stopped, restarting, overloaded, the
// network cut), not something about the preview: a deploy that meets it
// is tried again, without using an attempt of the SHA. The deadline of
// the operation itself (context.DeadlineExceeded, the Helm timeout) is not
// one: hooks or workloads that take too long are the chart's.
func Unreachable(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	case apierrors.IsServiceUnavailable(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err):
		return true
	}
	msg := err.Error()
	if strings.Contains(msg, "failed calling webhook") { // an admission webhook down: the cluster's to fix, reported
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	if strings.Contains(msg, "timed out after") { // the operation's own deadline, as Helm words it
		return false
	}
	for _, s := range unreachableText {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
