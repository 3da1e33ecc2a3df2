package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	netv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/previewd/previewd/reconcile/model"
)

// FenceName names the NetworkPolicy, ResourceQuota and LimitRange previewd
// puts in every preview namespace.
const FenceName = "previewd-fence"

// fieldManager is previewd's server-side apply field manager.
const fieldManager = "previewd"

// Pod Security Admission labels.
const (
	labelPSAEnforce        = "pod-security.kubernetes.io/enforce"
	labelPSAEnforceVersion = "pod-security.kubernetes.io/enforce-version"
	labelPSAWarn           = "pod-security.kubernetes.io/warn"
	labelPSAAudit          = "pod-security.kubernetes.io/audit"
)

// psaLabels are the namespace labels that make the API server enforce level
// (and warn and audit against restricted, whatever is enforced).
func psaLabels(level string) map[string]string {
	return map[string]string{labelPSAEnforce: level, labelPSAEnforceVersion: "latest",
		labelPSAWarn: model.PodSecurityRestricted, labelPSAAudit: model.PodSecurityRestricted}
}

// Fence puts f's NetworkPolicy, ResourceQuota and LimitRange in namespace
// ns (owned by this instance; its Pod Security labels are EnsureCreated's)
// with server-side apply, field manager "previewd": what is applied again
// is unchanged, what changed in f is updated. A zero Fence (no Pod
// Security level) puts nothing.
func (n *Namespaces) Fence(ctx context.Context, ns string, f model.Fence) error {
	if f.PodSecurity == "" {
		return nil
	}
	owned := map[string]string{LabelManagedBy: ManagedBy, LabelInstance: n.Instance}
	apply := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if _, err := n.Client.NetworkingV1().NetworkPolicies(ns).Apply(ctx, networkPolicy(ns, f).WithLabels(owned), apply); err != nil {
		return fmt.Errorf("applying the NetworkPolicy of %s: %w", ns, err)
	}
	if len(f.Quota) > 0 {
		q := corev1ac.ResourceQuota(FenceName, ns).WithLabels(owned).WithSpec(corev1ac.ResourceQuotaSpec().WithHard(quantities(f.Quota)))
		if _, err := n.Client.CoreV1().ResourceQuotas(ns).Apply(ctx, q, apply); err != nil {
			return fmt.Errorf("applying the ResourceQuota of %s: %w", ns, err)
		}
	}
	if len(f.Limits)+len(f.Requests) > 0 {
		item := corev1ac.LimitRangeItem().WithType(corev1.LimitTypeContainer).
			WithDefault(quantities(f.Limits)).WithDefaultRequest(quantities(f.Requests))
		lr := corev1ac.LimitRange(FenceName, ns).WithLabels(owned).WithSpec(corev1ac.LimitRangeSpec().WithLimits(item))
		if _, err := n.Client.CoreV1().LimitRanges(ns).Apply(ctx, lr, apply); err != nil {
			return fmt.Errorf("applying the LimitRange of %s: %w", ns, err)
		}
	}
	return n.copySecrets(ctx, ns, f.CopySecretsFrom, f.CopySecrets)
}

func quantities(m map[string]string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range m {
		out[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	return out
}

// networkPolicy denies all traffic of the namespace's pods except: ingress
// from the namespace itself and from the namespaces f.IngressFrom selects;
// egress to the namespace itself, to the cluster DNS (kube-system pods
// k8s-app=kube-dns, port 53) and to f.EgressAllow, from which the cloud
// metadata address is always excepted. previewd's own pod, its database
// and the rest of the cluster are reachable only through an allow-listed
// CIDR.
func networkPolicy(ns string, f model.Fence) *netv1ac.NetworkPolicyApplyConfiguration {
	all := func() *metav1ac.LabelSelectorApplyConfiguration { return metav1ac.LabelSelector() }
	ingress := netv1ac.NetworkPolicyIngressRule().WithFrom(netv1ac.NetworkPolicyPeer().WithPodSelector(all()))
	if len(f.IngressFrom) > 0 {
		ingress.WithFrom(netv1ac.NetworkPolicyPeer().WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(f.IngressFrom)))
	}
	udp, tcp, dns := corev1.ProtocolUDP, corev1.ProtocolTCP, intstr.FromInt32(53)
	egress := []*netv1ac.NetworkPolicyEgressRuleApplyConfiguration{
		netv1ac.NetworkPolicyEgressRule().WithTo(netv1ac.NetworkPolicyPeer().WithPodSelector(all())),
		netv1ac.NetworkPolicyEgressRule().
			WithTo(netv1ac.NetworkPolicyPeer().
				WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"kubernetes.io/metadata.name": "kube-system"})).
				WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"k8s-app": "kube-dns"}))).
			WithPorts(netv1ac.NetworkPolicyPort().WithProtocol(udp).WithPort(dns), netv1ac.NetworkPolicyPort().WithProtocol(tcp).WithPort(dns)),
	}
	cidrs := append([]string(nil), f.EgressAllow...)
	sort.Strings(cidrs)
	_, metadata, _ := net.ParseCIDR(model.MetadataAddress)
	for _, c := range cidrs {
		block := netv1ac.IPBlock().WithCIDR(c)
		if _, n, err := net.ParseCIDR(c); err == nil && n.Contains(metadata.IP) {
			block.WithExcept(model.MetadataAddress)
		}
		egress = append(egress, netv1ac.NetworkPolicyEgressRule().WithTo(netv1ac.NetworkPolicyPeer().WithIPBlock(block)))
	}
	return netv1ac.NetworkPolicy(FenceName, ns).WithSpec(netv1ac.NetworkPolicySpec().
		WithPodSelector(all()).
		WithPolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress).
		WithIngress(ingress).
		WithEgress(egress...))
}

// Labels and annotation of a Secret copied into a preview namespace.
const (
	// LabelCopiedFrom is the namespace the Secret was copied from.
	LabelCopiedFrom = "previewd.dev/copied-from"
	// AnnotationSourceVersion is the source's resourceVersion.
	AnnotationSourceVersion = "previewd.dev/source-version"
)

// copySecrets copies the named Secrets of namespace from into ns (server-
// side apply: type, data, a label naming the source and its
// resourceVersion). Values are never logged nor put in an error.
func (n *Namespaces) copySecrets(ctx context.Context, ns, from string, names []string) error {
	for _, name := range names {
		src, err := n.Client.CoreV1().Secrets(from).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading Secret %s/%s to copy it (copy_secrets): %w", from, name, err)
		}
		s := corev1ac.Secret(name, ns).WithType(src.Type).WithData(src.Data).
			WithLabels(map[string]string{LabelManagedBy: ManagedBy, LabelInstance: n.Instance, LabelCopiedFrom: from}).
			WithAnnotations(map[string]string{AnnotationSourceVersion: src.ResourceVersion})
		if _, err := n.Client.CoreV1().Secrets(ns).Apply(ctx, s, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("copying Secret %s/%s into %s: %w", from, name, ns, err)
		}
	}
	return nil
}

// SecretsVersion identifies the current version of the named Secrets of
// namespace: it changes when any of them changes (their resourceVersions;
// no value is read into it).
func (c *Cluster) SecretsVersion(ctx context.Context, namespace string, names []string) (string, error) {
	var b strings.Builder
	for _, name := range names {
		s, err := c.Client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading Secret %s/%s (copy_secrets): %w", namespace, name, err)
		}
		fmt.Fprintf(&b, "%s@%s,", name, s.ResourceVersion)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8]), nil
}
