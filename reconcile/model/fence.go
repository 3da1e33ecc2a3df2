package model

// Pod Security levels a preview namespace may enforce.
const (
	PodSecurityRestricted = "restricted"
	PodSecurityBaseline   = "baseline"
)

// Fence is what previewd puts around every preview namespace of a
// repository: the Pod Security level the API server enforces, a
// NetworkPolicy (default deny; ingress from the ingress controller's
// namespaces and the namespace itself; egress to DNS, the namespace itself
// and the allow-listed CIDRs, never the cloud metadata address), a
// ResourceQuota and a LimitRange.
type Fence struct {
	// PodSecurity is PodSecurityRestricted or PodSecurityBaseline.
	PodSecurity string
	// IngressFrom selects, by labels, the namespaces (the ingress
	// controller's) allowed to reach the preview's pods.
	IngressFrom map[string]string
	// EgressAllow are the CIDRs the preview may reach besides DNS and its
	// own namespace (169.254.169.254 is always excepted).
	EgressAllow []string
	// Quota are the ResourceQuota's hard limits (resource name → quantity).
	Quota map[string]string
	// Limits and Requests are the LimitRange's default limits and requests
	// of a container that sets none.
	Limits, Requests map[string]string
}

// MetadataAddress is the cloud metadata endpoint, which no preview may
// reach whatever its egress allow-list.
const MetadataAddress = "169.254.169.254/32"
