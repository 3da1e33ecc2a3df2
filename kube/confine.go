package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// clusterScoped are kinds that live outside any namespace: a preview's
// chart may not create them (they would outlive the preview and act on
// the whole cluster).
var clusterScoped = map[string]bool{
	"Namespace": true, "Node": true, "PersistentVolume": true, "StorageClass": true, "PriorityClass": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true, "APIService": true,
	"MutatingWebhookConfiguration": true, "ValidatingWebhookConfiguration": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
	"MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
	"RuntimeClass": true, "IngressClass": true, "CSIDriver": true, "VolumeAttachment": true,
	"CertificateSigningRequest": true, "FlowSchema": true, "PriorityLevelConfiguration": true,
	"ClusterIssuer": true,
}

// confine is a Helm post-renderer that lets through only objects of the
// release's own namespace: an object naming another namespace, or of a
// cluster-scoped kind, fails the operation before anything is applied.
// A chart read from the PR (repo:) is written by whoever can push a
// branch; previewd's identity must not create objects elsewhere for it.
type confine struct{ namespace string }

// ConfineError is an object the chart may not create: in another
// namespace, or cluster-scoped.
type ConfineError struct{ msg string }

func (e *ConfineError) Error() string { return e.msg }

func (c confine) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	dec := yaml.NewDecoder(bytes.NewReader(rendered.Bytes()))
	for {
		var obj struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return rendered, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the rendered manifests: %w", err)
		}
		switch ns := strings.TrimSpace(obj.Metadata.Namespace); {
		case obj.Kind == "":
		case clusterScoped[obj.Kind]:
			return nil, &ConfineError{fmt.Sprintf("%s %q is cluster-scoped: a preview may only create objects in its own namespace %s", obj.Kind, obj.Metadata.Name, c.namespace)}
		case ns != "" && ns != c.namespace:
			return nil, &ConfineError{fmt.Sprintf("%s %q is in namespace %s, outside the preview's namespace %s", obj.Kind, obj.Metadata.Name, ns, c.namespace)}
		}
	}
}
