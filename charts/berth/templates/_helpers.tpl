{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "operator") */}}
{{- define "berth.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "berth.image" -}}
{{- $v := .root.Values.image -}}
{{- printf "%s/%s:%s" $v.registry (get $v.names .component) (default .root.Chart.AppVersion $v.tag) -}}
{{- end -}}

{{- define "berth.recommenderUrl" -}}
{{- if .Values.recommender.externalUrl -}}
{{- .Values.recommender.externalUrl -}}
{{- else if .Values.recommender.enabled -}}
{{- printf "http://%s-recommender.%s.svc:%v" (include "berth.fullname" .) .Release.Namespace .Values.recommender.port -}}
{{- end -}}
{{- end -}}

{{/* The ClusterRole rules of an RBAC manifest in files/ (operator/rbac.yaml,
profiler/rbac.yaml): one source of truth for the rules a test and a user both read. */}}
{{- define "berth.rulesFrom" -}}
{{- range (splitList "\n---\n" (.root.Files.Get .file)) }}
{{- $doc := fromYaml . }}
{{- if eq (toString (get $doc "kind")) "ClusterRole" }}
{{- toYaml (get $doc "rules") }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "berth.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
