{{/* Names and labels shared by every template. */}}
{{- define "gprxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gprxy.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gprxy.labels" -}}
{{ include "gprxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gprxy.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-env" (include "gprxy.fullname" .)) -}}
{{- end -}}

{{/*
The proxy config file: .Values.config plus what the chart decides (listeners, the TLS files it mounts,
the peer channel over the headless Service).
*/}}
{{- define "gprxy.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.ports.postgres)) -}}
{{- $_ := set $cfg "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics))) -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $cfg "tls" (dict "cert" "/etc/gprxy/tls/tls.crt" "key" "/etc/gprxy/tls/tls.key") -}}
{{- end -}}
{{- if .Values.cluster.enabled -}}
{{- $peers := printf "%s-headless.%s.svc:%d" (include "gprxy.fullname" .) .Release.Namespace (int .Values.ports.cluster) -}}
{{- $_ := set $cfg "cluster" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.cluster)) "secret" (printf "${%s}" .Values.cluster.secretEnvName) "peers_dns" $peers) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
