{{/* Names, labels and the operator's RBAC rules, shared by the templates. */}}

{{- define "kinesis-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kinesis-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kinesis-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kinesis-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kinesis-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kinesis-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kinesis-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kinesis-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kinesis-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "kinesis-operator.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (default .Chart.AppVersion .Values.workerImage.tag) }}
{{- end }}

{{/*
What kinesis-operator may do: exactly the calls its code makes (operator/src), nothing more.
Leader election is granted separately, in the release namespace only (leader-election-rbac.yaml).
*/}}
{{- define "kinesis-operator.rules" -}}
# Read ingesters; patch adds and removes the finalizer.
- apiGroups: [kinesis-operator.dev]
  resources: [kinesisingesters]
  verbs: [get, list, watch, patch]
# Status by server-side apply.
- apiGroups: [kinesis-operator.dev]
  resources: [kinesisingesters/status]
  verbs: [patch]
# The shard table: the operator is its only writer.
- apiGroups: [kinesis-operator.dev]
  resources: [kinesisshardassignments]
  verbs: [get, list, watch, create, update, delete]
# Worker objects: created before their pods, fenced through spec, deleted after scale-down.
- apiGroups: [kinesis-operator.dev]
  resources: [kinesisworkers]
  verbs: [get, list, watch, create, update, delete]
# Never used by the operator itself: held only so it may grant it in the worker Role
# (Kubernetes forbids granting what one does not hold).
- apiGroups: [kinesis-operator.dev]
  resources: [kinesisworkers/status]
  verbs: [update]
# The worker workload, by server-side apply; get first, to refuse to take over a same-named
# object the ingester did not make.
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch]
# Ready counts of worker pods; never create.
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Events on ingesters.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
