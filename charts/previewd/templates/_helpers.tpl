{{- define "previewd.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "previewd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "previewd.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "previewd.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "previewd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "previewd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "previewd.labels" -}}
{{ include "previewd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "previewd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "previewd.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* Where the GitHub App key is mounted. */}}
{{- define "previewd.appKeyDir" -}}/etc/previewd/github-app{{- end -}}

{{/* previewd's config file (README "Configuration"). No secret in it. */}}
{{- define "previewd.config" -}}
{{- $c := .Values.config -}}
{{- $repos := list -}}
{{- range .Values.repositories -}}
{{- $repos = append $repos (merge (dict) . (dict "chart" $c.defaultChart)) -}}
{{- end -}}
listen: {{ printf ":%v" .Values.metrics.port | quote }}
interval: {{ $c.interval | quote }}
resync_interval: {{ $c.resyncInterval | quote }}
instance: {{ $c.instance | quote }}
github:
  api_url: {{ .Values.github.apiURL | quote }}
{{- if .Values.github.app.enabled }}
  app:
    app_id: {{ .Values.github.app.appID | int64 }}
    installation_id: {{ .Values.github.app.installationID | int64 }}
    private_key_file: {{ printf "%s/%s" (include "previewd.appKeyDir" .) .Values.github.app.key | quote }}
{{- else }}
  token_env: GITHUB_TOKEN
{{- end }}
kubernetes:
  kubeconfig: ""
{{- if .Values.rbac.create }}
  preview_role: {{ include "previewd.previewRole" . | quote }}
{{- end }}
deploy_timeout: {{ $c.deployTimeout | quote }}
max_parallel_deploys: {{ $c.maxParallelDeploys | int }}
max_attempts: {{ $c.maxAttempts | int }}
{{- if $repos }}
repositories:
{{ toYaml $repos | indent 2 }}
{{- else }}
repositories: []
{{- end }}
{{- end -}}

{{/* The ClusterRole previewd binds in each preview namespace it owns. */}}
{{- define "previewd.previewRole" -}}
{{ include "previewd.fullname" . }}-preview
{{- end -}}

{{/*
previewd's own rules, cluster-wide: only what cannot be granted per
namespace. Its writes are confined to the namespaces it owns by the
ValidatingAdmissionPolicy (policy.yaml). Every rule (and, with
PREVIEWD_TEST_RBAC_VERBS=1, every verb) is proven necessary by
internal/harness/chartcheck TestLeastPrivilege; docs/rbac.md says what fails
without it.
*/}}
{{- define "previewd.rules" -}}
# Per-PR namespaces: list the owned ones, check/create, move to a renamed
# repository (update), delete on close. The policy allows create only with
# the ownership labels, update/delete only of a namespace that has them.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, create, update, delete]
# One RoleBinding per preview namespace, to the preview role below (the
# policy allows it only in an owned namespace, to that role, for previewd);
# get and delete replace one left bound to an older role or identity.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [create, get, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  verbs: [bind]
  resourceNames: [{{ include "previewd.previewRole" . }}]
# Each cycle: one list across namespaces tells which previews' Deployments
# are Ready (no Secret, no pod, no log is read outside owned namespaces).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list]
{{- end -}}

{{/*
What previewd may do inside a preview namespace it owns: bound there by
previewd itself (a RoleBinding created with the namespace), nowhere else.
*/}}
{{- define "previewd.previewRules" -}}
# charts/preview-app: Deployment. Helm 4 server-side apply: get (conflict
# check), create + patch (apply), delete (uninstall). (list, for the
# readiness wait, comes from previewd's own role: one list across
# namespaces each cycle.)
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch, delete]
# charts/preview-app: Service (Helm: get, create + patch, delete).
- apiGroups: [""]
  resources: [services]
  verbs: [get, create, patch, delete]
# charts/preview-app: Ingress (Helm: get, create + patch, delete).
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, create, patch, delete]
# Readiness of the other workload kinds a chart may install (kstatus).
- apiGroups: [apps]
  resources: [statefulsets, daemonsets]
  verbs: [list]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list]
# Readiness failure diagnosis: the current rollout's ReplicaSet ...
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list]
# ... its pods' waiting reasons (ImagePullBackOff, CrashLoopBackOff) ...
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# ... and the failing container's last log lines for the PR comment.
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# The fence around each preview namespace (server-side apply, which
# creates what does not exist yet): NetworkPolicy, ResourceQuota,
# LimitRange.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [resourcequotas, limitranges]
  verbs: [create, patch]
{{- if .Values.rbac.copySecrets }}
# Secrets copied into each preview namespace (copy_secrets; server-side
# apply).
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, patch]
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end -}}
