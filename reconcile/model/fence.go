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
// ResourceQuota and a LimitRange, and Secrets copied from a source
// namespace.
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
	// CopySecretsFrom is the namespace the Secrets named in CopySecrets
	// are copied from into the preview namespace (image pull secrets,
	// test credentials); a change of any of them upgrades the previews.
	CopySecretsFrom string   `json:",omitempty"`
	CopySecrets     []string `json:",omitempty"`
}

// MetadataAddress is the cloud metadata endpoint, which no preview may
// reach whatever its egress allow-list.
const MetadataAddress = "169.254.169.254/32"
