{{- define "preview-app.name" -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{- define "preview-app.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "preview-app.labels" -}}
{{ include "preview-app.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
environment: {{ .Values.environment | quote }}
{{- if .Values.pullRequest.number }}
previewd.dev/pr: {{ .Values.pullRequest.number | toString | quote }}
{{- end }}
{{- end -}}

{{- define "preview-app.annotations" -}}
{{- if .Values.pullRequest.branch }}
previewd.dev/branch: {{ .Values.pullRequest.branch | toString | quote }}
{{- end }}
{{- end -}}
