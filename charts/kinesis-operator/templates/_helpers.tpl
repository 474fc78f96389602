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

{{/* A Go duration of the schema's form (`14s`, `1m30s`, `500ms`) in milliseconds. */}}
{{- define "kinesis-operator.millis" -}}
{{- $ms := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" . -1 }}
{{- if hasSuffix "ms" . }}{{ $ms = add $ms (trimSuffix "ms" . | int64) }}
{{- else if hasSuffix "s" . }}{{ $ms = add $ms (mul (trimSuffix "s" . | int64) 1000) }}
{{- else if hasSuffix "m" . }}{{ $ms = add $ms (mul (trimSuffix "m" . | int64) 60000) }}
{{- else }}{{ $ms = add $ms (mul (trimSuffix "h" . | int64) 3600000) }}
{{- end }}
{{- end }}
{{- $ms }}
{{- end }}

{{/* The fleet timing rules the operator and every worker enforce at start-up
(kinesis_ingester_api::FleetTimings), checked at `helm install` instead. */}}
{{- define "kinesis-operator.checkTimings" -}}
{{- $t := .Values.timings }}
{{- $report := include "kinesis-operator.millis" $t.reportInterval | int64 }}
{{- $fence := include "kinesis-operator.millis" $t.selfFenceAfter | int64 }}
{{- $lease := include "kinesis-operator.millis" $t.workerLease | int64 }}
{{- if lt $report 5000 }}
{{- fail (printf "timings.reportInterval is %s: it must be at least 5s (each report is one API write per worker)" $t.reportInterval) }}
{{- end }}
{{- if lt $fence (mul $report 2) }}
{{- fail (printf "timings.selfFenceAfter (%s) must be at least twice timings.reportInterval (%s), so one failed report does not stop a worker: raise selfFenceAfter or lower reportInterval" $t.selfFenceAfter $t.reportInterval) }}
{{- end }}
{{- if le $lease (add $fence 1000) }}
{{- fail (printf "timings.workerLease (%s) must be longer than timings.selfFenceAfter (%s) by more than 1s, so a worker stops reading before its shards can move: raise workerLease or lower selfFenceAfter" $t.workerLease $t.selfFenceAfter) }}
{{- end }}
{{- end }}

{{/* The alert rule groups of the PrometheusRule, also what `promtool check rules` reads in the
chart's tests. Labels of every alert: severity, plus .Values.prometheusRule.alertLabels. */}}
{{- define "kinesis-operator.alertGroups" -}}
{{- $r := .Values.prometheusRule }}
{{- $extra := $r.alertLabels | default dict }}
groups:
  - name: kinesis-operator.ingesters
    rules:
      - alert: KinesisIngesterLagHigh
        expr: max by (namespace, name) (kinesis_operator_max_millis_behind_latest) > {{ int64 $r.lagThresholdMillis }}
        for: {{ $r.lagFor }}
        labels:
          severity: warning
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.name }}`}} is {{`{{ $value }}`}} ms behind its stream"
          description: >-
            The slowest shard of ingester {{`{{ $labels.namespace }}/{{ $labels.name }}`}} has been
            more than {{ $r.lagThresholdMillis }} ms behind the tip of its stream for {{ $r.lagFor }}.
            Check first: `kubectl get ki -o wide -n {{`{{ $labels.namespace }}`}}` (a failing
            sink shows as NotDelivering/SinkFailing), then the sink's error rate and throughput;
            if the sink is healthy and every worker is busy, add workers (spec.workers.replicas).
      - alert: KinesisIngesterNotReady
        # A suspended ingester (spec.suspend) is not Ready on purpose.
        expr: >-
          max by (namespace, name) (kinesis_operator_ready) == 0
          unless on (namespace, name)
          max by (namespace, name) (kinesis_operator_suspended) == 1
        for: {{ $r.notReadyFor }}
        labels:
          severity: critical
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.name }}`}} is not Ready"
          description: >-
            Ingester {{`{{ $labels.namespace }}/{{ $labels.name }}`}} has been Ready=False for
            {{ $r.notReadyFor }}: some shard is unread, or has records waiting and nothing
            delivered. Check first: `kubectl describe ki -n {{`{{ $labels.namespace }} {{ $labels.name }}`}}`;
            the Ready and Degraded conditions name the reason (NotDelivering, ShardsNotReading,
            WorkersNotReady, StreamNotFound, ...) and the shards.
      - alert: KinesisIngesterSinkFailing
        expr: >-
          sum by (namespace, pod) (rate(kinesis_ingester_sink_errors_total[5m])) > 0
          unless on (namespace, pod)
          sum by (namespace, pod) (rate(kinesis_ingester_records_out_total[5m])) > 0
        for: {{ $r.sinkFailingFor }}
        labels:
          severity: critical
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "the sink of {{`{{ $labels.namespace }}/{{ $labels.pod }}`}} fails and delivers nothing"
          description: >-
            Every send of worker {{`{{ $labels.namespace }}/{{ $labels.pod }}`}} has failed for
            {{ $r.sinkFailingFor }}; its shards are held, not lost, and reading is paused.
            Check first: the error category in kinesis_ingester_sink_errors_total (connect, dns,
            tls, status_4xx, status_5xx, timeout), then whether the destination is up and
            reachable from the worker's namespace (NetworkPolicy, credentials in headersFrom).
      - alert: KinesisIngesterReadErrors
        expr: sum by (namespace, pod, category) (rate(kinesis_ingester_source_errors_total{category!="throttled"}[5m])) > 0
        for: {{ $r.readErrorsFor }}
        labels:
          severity: warning
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pod }}`}} fails to read Kinesis ({{`{{ $labels.category }}`}})"
          description: >-
            Worker {{`{{ $labels.namespace }}/{{ $labels.pod }}`}} has failed Kinesis calls of
            category {{`{{ $labels.category }}`}} for {{ $r.readErrorsFor }}. Check first:
            credentials or access_denied mean the worker's AWS identity (IRSA or Pod Identity
            on its ServiceAccount, the role's policy, KMS key policy for encrypted streams);
            not_found means the stream or consumer is gone; connect or dns mean the endpoint
            or the network path to it.
      - alert: KinesisIngesterNoProgress
        expr: >-
          sum by (namespace, pod) (increase(kinesis_ingester_records_out_total[{{ $r.noProgressFor }}])) == 0
          and on (namespace, pod)
          max by (namespace, pod) (kinesis_ingester_millis_behind_latest) > 60000
        for: 5m
        labels:
          severity: warning
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pod }}`}} is behind and delivered nothing for {{ $r.noProgressFor }}"
          description: >-
            Worker {{`{{ $labels.namespace }}/{{ $labels.pod }}`}} holds shards more than a minute
            behind their stream and its sink acknowledged no record in {{ $r.noProgressFor }}.
            Check first: the worker's log and kinesis_ingester_sink_errors_total, then whether it
            self-fenced (kinesis_ingester_fleet_self_fenced) because it cannot reach the API server.
      - alert: KinesisWorkerSelfFenced
        expr: max by (namespace, pod) (kinesis_ingester_fleet_self_fenced) == 1
        for: 2m
        labels:
          severity: warning
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pod }}`}} stopped reading: it cannot write its status"
          description: >-
            Worker {{`{{ $labels.namespace }}/{{ $labels.pod }}`}} could not write its KinesisWorker
            status within its self-fence time and stopped reading; its shards move to other
            workers. Check first: the worker's access to the API server (network policy, API
            priority and fairness throttling, its Role), and kinesis_ingester_fleet_report_writes_total.
      - alert: KinesisWorkersExpiring
        expr: sum by (namespace, name) (increase(kinesis_operator_fences_total{reason=~"expired|stopped"}[15m])) > {{ int64 $r.expiriesPer15m }}
        labels:
          severity: warning
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "workers of {{`{{ $labels.namespace }}/{{ $labels.name }}`}} keep expiring"
          description: >-
            The operator fenced {{`{{ $value }}`}} shards of {{`{{ $labels.namespace }}/{{ $labels.name }}`}}
            off workers that stopped reporting in the last 15 minutes. Each such handoff may
            re-deliver up to one report interval of records. Check first: worker restarts and
            OOM kills (`kubectl get pods -l kinesis-operator.dev/ingester={{`{{ $labels.name }}`}}`),
            node pressure, and whether timings.workerLease is too tight for the API server's latency.
  - name: kinesis-operator.operator
    rules:
      - alert: KinesisOperatorNoLeader
        expr: sum(kinesis_operator_leader) == 0 or absent(kinesis_operator_leader)
        for: {{ $r.operatorFor }}
        labels:
          severity: critical
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "no kinesis-operator replica leads"
          description: >-
            No operator replica has held the leader Lease for {{ $r.operatorFor }}, so no ingester
            is reconciled: shards of dead workers do not move and new ingesters do not start.
            Check first: the operator pods and their logs, and the Lease `kinesis-operator-leader`.
      - alert: KinesisOperatorReconcileErrors
        expr: >-
          sum by (namespace, name) (rate(kinesis_operator_reconciliations_total{result="error"}[10m])) > 0
          unless on (namespace, name)
          sum by (namespace, name) (rate(kinesis_operator_reconciliations_total{result="ok"}[10m])) > 0
        for: {{ $r.operatorFor }}
        labels:
          severity: warning
          {{- with $extra }}{{ toYaml . | nindent 10 }}{{ end }}
        annotations:
          summary: "every reconcile of {{`{{ $labels.namespace }}/{{ $labels.name }}`}} fails"
          description: >-
            The operator has not reconciled {{`{{ $labels.namespace }}/{{ $labels.name }}`}}
            successfully for {{ $r.operatorFor }}. Check first: the operator's log for this
            ingester and kinesis_operator_reconciliations_total by error_category, then
            `kubectl describe ki` for a condition naming the cause.
{{- end }}

{{/* Helm installs crds/ once and never upgrades them: refuse to run this chart's operator
against CRDs of another schema (each carries kinesis-operator.dev/schema-hash). `lookup` finds
nothing under `helm template` or on a first install, so only upgrades are checked. */}}
{{- define "kinesis-operator.checkCrds" -}}
{{- if .Values.crdCheck }}
{{- range $path, $_ := .Files.Glob "crds/*.yaml" }}
{{- $chart := $.Files.Get $path | fromYaml }}
{{- $name := $chart.metadata.name }}
{{- $live := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" $name }}
{{- if $live }}
{{- $want := index $chart.metadata.annotations "kinesis-operator.dev/schema-hash" }}
{{- $have := index (default dict $live.metadata.annotations) "kinesis-operator.dev/schema-hash" | default "none" }}
{{- if ne $want $have }}
{{- fail (printf "the CRD %s in the cluster has schema %s, this chart needs %s, and Helm never upgrades CRDs: apply the chart's first with `kubectl apply --server-side --force-conflicts -f charts/kinesis-operator/crds/`, then run helm again (or set crdCheck=false if something else applies them)" $name $have $want) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
