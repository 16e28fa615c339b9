{{/* Names and labels shared by every template. */}}

{{- define "fedbroker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "fedbroker.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fedbroker.broker.fullname" -}}{{ include "fedbroker.fullname" . }}-broker{{- end -}}
{{- define "fedbroker.agent.fullname" -}}{{ include "fedbroker.fullname" . }}-agent{{- end -}}

{{- define "fedbroker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "fedbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fedbroker
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one role: call with (dict "ctx" $ "role" "broker"). */}}
{{- define "fedbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedbroker.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "fedbroker.roleLabels" -}}
{{ include "fedbroker.labels" .ctx }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "fedbroker.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "fedbroker.broker.dbSecretName" -}}
{{- default (printf "%s-db" (include "fedbroker.broker.fullname" .)) .Values.broker.database.existingSecret -}}
{{- end -}}

{{- define "fedbroker.broker.dbSecretKey" -}}
{{- if .Values.broker.database.existingSecret -}}{{ .Values.broker.database.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "fedbroker.agent.tokenSecretName" -}}
{{- default (printf "%s-token" (include "fedbroker.agent.fullname" .)) .Values.agent.token.existingSecret -}}
{{- end -}}

{{- define "fedbroker.agent.tokenSecretKey" -}}
{{- if .Values.agent.token.existingSecret -}}{{ .Values.agent.token.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{- define "fedbroker.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (include "fedbroker.agent.fullname" .) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The in-cluster name of the broker Service. */}}
{{- define "fedbroker.broker.serviceHost" -}}
{{- printf "%s.%s.svc" (include "fedbroker.broker.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The agent config with `broker` defaulted to this release's broker Service. */}}
{{- define "fedbroker.agent.config" -}}
{{- $config := deepCopy .Values.agent.config -}}
{{- if and (not (hasKey $config "broker")) .Values.broker.enabled -}}
{{- $_ := set $config "broker" (printf "%s:%d" (include "fedbroker.broker.serviceHost" .) (int .Values.broker.service.port)) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* OTEL_* variables for both roles (no secret values: headers come from a Secret by envFrom). */}}
{{- define "fedbroker.otelEnv" -}}
{{- $otel := .Values.otel -}}
- name: OTEL_TRACES_EXPORTER
  value: {{ ternary "otlp" "none" $otel.traces | quote }}
{{- if $otel.metrics }}
- name: OTEL_METRICS_EXPORTER
  value: otlp
{{- end }}
{{- if $otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_INSECURE
  value: {{ $otel.insecure | quote }}
{{- end }}
{{- if $otel.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ $otel.resourceAttributes | quote }}
{{- end }}
{{- end -}}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "fedbroker.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{/* TLS options of broker.probe and broker.k8s_role_label (none without TLS). */}}
{{- define "fedbroker.broker.probeTlsArgs" -}}
{{- $tls := .Values.broker.tls -}}
{{- if $tls.enabled }}
- --ca-file={{ $tls.mountPath }}/{{ $tls.caKey }}
- --server-name={{ default (include "fedbroker.broker.serviceHost" .) $tls.serverName }}
{{- if $tls.clientCaKey }}
- --cert-file=/etc/fedbroker/probe-tls/tls.crt
- --key-file=/etc/fedbroker/probe-tls/tls.key
{{- end }}
{{- end }}
{{- end -}}
