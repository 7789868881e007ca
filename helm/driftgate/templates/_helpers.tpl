{{/* Names are cut to 63 characters: Service names must be DNS-1123 labels. */}}
{{- define "driftgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "driftgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "driftgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "driftgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: gateway, vllm-<model> ... */}}
{{- define "driftgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "driftgate.gatewayServiceAccount" -}}{{ include "driftgate.fullname" . }}-gateway{{- end -}}
{{- define "driftgate.trainerServiceAccount" -}}{{ include "driftgate.fullname" . }}-trainer{{- end -}}
{{- define "driftgate.vllmName" -}}{{ printf "%s-vllm-%s" (include "driftgate.fullname" .root) .model.name | trunc 63 | trimSuffix "-" }}{{- end -}}

{{- define "driftgate.adaptersClaim" -}}
{{- default (printf "%s-adapters" (include "driftgate.fullname" .)) .Values.adapters.pvc.existingClaim -}}
{{- end -}}

{{/* The Secret and key holding the gateway's PostgreSQL URL; fails the render when none is configured. */}}
{{- define "driftgate.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if or .Values.database.url .Values.postgresql.enabled -}}
{{- include "driftgate.fullname" . }}-database
{{- else -}}
{{- fail "cluster mode needs PostgreSQL: set postgresql.enabled=true, database.url or database.existingSecret" -}}
{{- end -}}
{{- end -}}

{{- define "driftgate.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{- define "driftgate.keysSecret" -}}
{{- default (printf "%s-keys" (include "driftgate.fullname" .)) .Values.gateway.keys.existingSecret -}}
{{- end -}}

{{/* vllm.models with each entry's missing keys defaulted (a list in user values replaces the default
     list whole, so per-model defaults cannot live in values.yaml). JSON: use with fromJsonArray. */}}
{{- define "driftgate.vllmModels" -}}
{{- $models := list -}}
{{- range .Values.vllm.models -}}
{{- $defaults := dict "replicas" 1 "tensorParallelSize" 1 "gpus" 1 "maxModelLen" 4096 "maxLoras" 4 "maxLoraRank" 64 "resources" (dict) "extraArgs" (list) "nodeSelector" (dict) "tolerations" (list) -}}
{{- $models = append $models (mustMergeOverwrite $defaults (deepCopy .)) -}}
{{- end -}}
{{- toJson $models -}}
{{- end -}}
