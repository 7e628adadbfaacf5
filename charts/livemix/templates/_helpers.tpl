{{/*
Names, labels, images and the environment shared by the LiveMix templates.
*/}}

{{- define "livemix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource. Component suffixes are at most 15 characters ("-edge-headless"), so the
prefix is cut at 48 to keep names valid as DNS labels (Services).
*/}}
{{- define "livemix.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "livemix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Recommended labels. Call with (dict "ctx" $ "component" "control").
*/}}
{{- define "livemix.labels" -}}
helm.sh/chart: {{ include "livemix.chart" .ctx }}
{{ include "livemix.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: livemix
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "livemix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "livemix.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
Image reference. Call with (dict "ctx" $ "image" .Values.control.image).
*/}}
{{- define "livemix.image" -}}
{{- $registry := .ctx.Values.image.registry | trimSuffix "/" }}
{{- $repo := .image.repository }}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.image.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* Image of a dev dependency: repository:tag, no registry prefix. */}}
{{- define "livemix.devImage" -}}
{{- printf "%s:%s" .repository (.tag | toString) }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "livemix.serviceAccountName" -}}
{{- $values := index .ctx.Values .component }}
{{- if $values.serviceAccount.create }}
{{- default (printf "%s-%s" (include "livemix.fullname" .ctx) .component) $values.serviceAccount.name }}
{{- else }}
{{- default "default" $values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Pod and container security contexts: the component's own, or the chart-wide defaults. */}}
{{- define "livemix.podSecurityContext" -}}
{{- $values := index .ctx.Values .component }}
{{- toYaml (default .ctx.Values.podSecurityContext $values.podSecurityContext) }}
{{- end }}

{{- define "livemix.securityContext" -}}
{{- $values := index .ctx.Values .component }}
{{- toYaml (default .ctx.Values.securityContext $values.securityContext) }}
{{- end }}

{{/* Service names. */}}
{{- define "livemix.controlService" -}}{{ include "livemix.fullname" . }}-control{{- end }}
{{- define "livemix.vodService" -}}{{ include "livemix.fullname" . }}-vod{{- end }}
{{- define "livemix.edgeApiService" -}}{{ include "livemix.fullname" . }}-edge-api{{- end }}
{{- define "livemix.edgeService" -}}{{ include "livemix.fullname" . }}-edge{{- end }}
{{- define "livemix.edgeHeadlessService" -}}{{ include "livemix.fullname" . }}-edge-headless{{- end }}
{{- define "livemix.devName" -}}{{ include "livemix.fullname" .ctx }}-{{ .name }}{{- end }}

{{/* Secret names. */}}
{{- define "livemix.authSecret" -}}
{{- default (printf "%s-auth" (include "livemix.fullname" .)) .Values.auth.existingSecret }}
{{- end }}
{{- define "livemix.authEnabled" -}}
{{- if not .Values.auth.insecureNoAuth }}true{{ end }}
{{- end }}
{{- define "livemix.playbackSecret" -}}
{{- default (printf "%s-playback" (include "livemix.fullname" .)) .Values.auth.playbackSigning.existingSecret }}
{{- end }}
{{- define "livemix.devSecret" -}}{{ include "livemix.fullname" . }}-dev{{- end }}
{{- define "livemix.edgeTokensSecret" -}}
{{- default (printf "%s-edge-tokens" (include "livemix.fullname" .)) .Values.auth.edgeTokens.inClusterExistingSecret }}
{{- end }}
{{- define "livemix.backendsSecret" -}}{{ include "livemix.fullname" . }}-backends{{- end }}

{{/*
A random value that survives upgrades: the one already in the Secret, else a new one. Memoised for the render
(in a hidden key of .Values), so the Secret and the checksum annotations over it see the same value.
Call with (dict "ctx" $ "secret" "<name>" "key" "<key>" "length" 40).
*/}}
{{- define "livemix.keptRandom" -}}
{{- if not (hasKey .ctx.Values "__livemixGenerated") }}
{{- $_ := set .ctx.Values "__livemixGenerated" dict }}
{{- end }}
{{- $cache := index .ctx.Values "__livemixGenerated" }}
{{- $id := printf "%s/%s" .secret .key }}
{{- if not (hasKey $cache $id) }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- $_ := set $cache $id (index $existing.data .key) }}
{{- else }}
{{- $_ := set $cache $id (randAlphaNum (int .length) | b64enc) }}
{{- end }}
{{- end }}
{{- index $cache $id }}
{{- end }}

{{/*
Per-edge credentials of the in-cluster edges: wanted when the chart runs edge pods and the APIs have tokens.
*/}}
{{- define "livemix.inClusterEdgeTokens" -}}
{{- if and .Values.edge.enabled (include "livemix.authEnabled" .) (gt (int .Values.edge.replicaCount) 0) }}true{{ end }}
{{- end }}

{{/* The edge pods' names, one a line: <fullname>-edge-0 ... (edge.replicaCount of them). */}}
{{- define "livemix.edgePods" -}}
{{- $fullname := include "livemix.fullname" . }}
{{- range $i := until (int .Values.edge.replicaCount) }}
{{ printf "%s-edge-%d" $fullname $i }}
{{- end }}
{{- end }}

{{/*
An in-cluster edge's id, as its LIVEMIX_EDGE_ID, its command topic and its line in the control node's edge
credentials: <topicPrefix>livemix-edge-<pod>. Call with (dict "ctx" $ "pod" "<pod name>").
*/}}
{{- define "livemix.edgeId" -}}
{{- printf "%slivemix-edge-%s" (include "livemix.topicPrefix" .ctx) .pod }}
{{- end }}

{{/*
LIVEMIX_EDGE_TOKENS_FILE of the control node: the in-cluster edges' lines (the chart's <fullname>-edge-tokens)
and the user's auth.edgeTokens.existingSecret, comma-separated; empty when there is neither.
*/}}
{{- define "livemix.edgeTokensFiles" -}}
{{- $files := list }}
{{- if include "livemix.inClusterEdgeTokens" . }}
{{- $files = append $files "/etc/livemix/in-cluster-edge-tokens/edge-tokens" }}
{{- end }}
{{- if .Values.auth.edgeTokens.existingSecret }}
{{- $files = append $files (printf "/etc/livemix/edge-tokens/%s" .Values.auth.edgeTokens.existingSecretKey) }}
{{- end }}
{{- join "," $files }}
{{- end }}

{{/* Whether the chart keeps a Secret for plain-value credentials. */}}
{{- define "livemix.backendsSecretNeeded" -}}
{{- if not .Values.dev.enabled }}
{{- if and .Values.externalDatabase.password (not .Values.externalDatabase.existingSecret) }}true{{ end }}
{{- if and .Values.s3.accessKeyId (not .Values.s3.existingSecret) }}true{{ end }}
{{- end }}
{{- end }}

{{/* Topic names (pubsub.topicPrefix applies to all of them). */}}
{{- define "livemix.topicPrefix" -}}
{{- .Values.pubsub.topicPrefix }}
{{- end }}

{{/* The VOD API's public root URL for the operator. */}}
{{- define "livemix.vodPublicUrl" -}}
{{- if .Values.operator.vodPublicUrl }}
{{- .Values.operator.vodPublicUrl | trimSuffix "/" }}
{{- else if and .Values.control.ingress.enabled .Values.control.ingress.host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.control.ingress.tls) 0)) .Values.control.ingress.host }}
{{- end }}
{{- end }}

{{/*
The address lists the dev init container waits for. Call with (dict "ctx" $ "component" "control").
*/}}
{{- define "livemix.devWaitTargets" -}}
{{- $ctx := .ctx }}
{{- $targets := list }}
{{- if eq .component "control" }}
{{- $targets = append $targets (printf "%s:5432" (include "livemix.devName" (dict "ctx" $ctx "name" "postgresql"))) }}
{{- $targets = append $targets (printf "%s:11211" (include "livemix.devName" (dict "ctx" $ctx "name" "memcached"))) }}
{{- end }}
{{- $targets = append $targets (printf "%s:5000" (include "livemix.devName" (dict "ctx" $ctx "name" "s3"))) }}
{{- $targets = append $targets (printf "%s:8085" (include "livemix.devName" (dict "ctx" $ctx "name" "pubsub"))) }}
{{- join " " $targets }}
{{- end }}

{{/*
Init container of control and edge pods in dev mode: waits until the in-cluster services accept connections, so
the binaries do not crash-loop (and back off) while PostgreSQL initialises. Uses the component's own image
(Debian with bash). Call with (dict "ctx" $ "component" "control" "image" "<image>").
*/}}
{{- define "livemix.devWaitContainer" -}}
{{- if and .ctx.Values.dev.enabled .ctx.Values.dev.waitForServices }}
- name: wait-for-services
  image: {{ .image }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  command:
    - /bin/bash
    - -c
    - |
      for target in {{ include "livemix.devWaitTargets" . }}; do
        host=${target%:*} port=${target##*:}
        until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
          echo "waiting for $target"
          sleep 2
        done
        echo "$target accepts connections"
      done
  securityContext:
    {{- include "livemix.securityContext" . | nindent 4 }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 64Mi
{{- end }}
{{- end }}

{{/*
Environment of the backing services the control node and the edges share: the object store and the bus (and
Pub/Sub credentials). Call with (dict "ctx" $).
*/}}
{{- define "livemix.backendsEnv" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
{{- if $v.dev.enabled }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "livemix.devSecret" $ctx }}
      key: s3-access-key-id
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "livemix.devSecret" $ctx }}
      key: s3-secret-access-key
{{- else if $v.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $v.s3.existingSecret }}
      key: {{ $v.s3.existingSecretAccessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.s3.existingSecret }}
      key: {{ $v.s3.existingSecretSecretAccessKeyKey }}
{{- else if $v.s3.accessKeyId }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "livemix.backendsSecret" $ctx }}
      key: s3-access-key-id
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "livemix.backendsSecret" $ctx }}
      key: s3-secret-access-key
{{- end }}
{{- if and (not $v.dev.enabled) $v.pubsub.credentials.existingSecret }}
- name: GOOGLE_APPLICATION_CREDENTIALS
  value: /var/run/secrets/livemix/gcp/{{ $v.pubsub.credentials.existingSecretKey }}
{{- end }}
{{- end }}

{{/* Config-map entries (environment variables) for the object store and the bus. */}}
{{- define "livemix.backendsConfig" -}}
{{- $v := .Values }}
{{- if $v.dev.enabled }}
LIVEMIX_BUCKET: {{ $v.dev.s3.bucket | quote }}
S3_ENDPOINT: {{ printf "http://%s:5000" (include "livemix.devName" (dict "ctx" . "name" "s3")) | quote }}
AWS_REGION: "us-east-1"
LIVEMIX_CREATE_BUCKET: "true"
PUBSUB_PROJECT_ID: {{ $v.dev.pubsub.projectId | quote }}
PUBSUB_EMULATOR_HOST: {{ printf "%s:8085" (include "livemix.devName" (dict "ctx" . "name" "pubsub")) | quote }}
LIVEMIX_CREATE_TOPICS: "true"
{{- else }}
LIVEMIX_BUCKET: {{ $v.s3.bucket | quote }}
{{- with $v.s3.endpoint }}
S3_ENDPOINT: {{ . | quote }}
{{- end }}
AWS_REGION: {{ $v.s3.region | quote }}
LIVEMIX_CREATE_BUCKET: {{ $v.s3.createBucket | toString | quote }}
{{- with $v.pubsub.projectId }}
PUBSUB_PROJECT_ID: {{ . | quote }}
{{- end }}
{{- with $v.pubsub.emulatorHost }}
PUBSUB_EMULATOR_HOST: {{ . | quote }}
{{- end }}
{{- with $v.pubsub.endpoint }}
PUBSUB_ENDPOINT: {{ . | quote }}
{{- end }}
LIVEMIX_CREATE_TOPICS: {{ $v.pubsub.createTopics | toString | quote }}
{{- end }}
LIVEMIX_OBJECT_PREFIX: {{ $v.s3.objectPrefix | quote }}
LIVEMIX_CONTROL_TOPIC: {{ printf "%slivemix-control" (include "livemix.topicPrefix" .) | quote }}
LIVEMIX_LOG_FORMAT: {{ $v.logFormat | quote }}
LIVEMIX_LOG: {{ $v.logLevel | quote }}
{{- end }}

{{/* Volumes and mounts for Pub/Sub credentials. */}}
{{- define "livemix.gcpVolume" -}}
{{- if and (not .Values.dev.enabled) .Values.pubsub.credentials.existingSecret }}
- name: gcp-credentials
  secret:
    secretName: {{ .Values.pubsub.credentials.existingSecret }}
    items:
      - key: {{ .Values.pubsub.credentials.existingSecretKey }}
        path: {{ .Values.pubsub.credentials.existingSecretKey }}
{{- end }}
{{- end }}

{{- define "livemix.gcpVolumeMount" -}}
{{- if and (not .Values.dev.enabled) .Values.pubsub.credentials.existingSecret }}
- name: gcp-credentials
  mountPath: /var/run/secrets/livemix/gcp
  readOnly: true
{{- end }}
{{- end }}

{{/* POD_NAME and POD_NAMESPACE from the downward API (first in env, so later entries can use $(POD_NAME)). */}}
{{- define "livemix.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/* Checksums of the chart's own Secrets, so pods restart when a credential the chart keeps changes. */}}
{{- define "livemix.secretChecksum" -}}
{{- $out := list }}
{{- $out = append $out (include (print .Template.BasePath "/secret-auth.yaml") . ) }}
{{- if .Values.auth.playbackSigning.enabled }}
{{- $out = append $out (include (print .Template.BasePath "/secret-playback.yaml") . ) }}
{{- end }}
{{- $out = append $out (include (print .Template.BasePath "/secret-backends.yaml") . ) }}
{{- $out = append $out (include (print .Template.BasePath "/dev/secret.yaml") . ) }}
{{- join "\n" $out | sha256sum }}
{{- end }}

{{/*
The control node's: also over the in-cluster edges' credentials, which it reads at start, so a new edge pod's
token (edge.replicaCount raised) or a rotation restarts it. The edges do not watch that Secret: scaling up must
not restart the edges already running (each keeps its own token).
*/}}
{{- define "livemix.controlSecretChecksum" -}}
{{- $out := list (include "livemix.secretChecksum" .) }}
{{- $out = append $out (include (print .Template.BasePath "/secret-edge-tokens.yaml") . ) }}
{{- join "\n" $out | sha256sum }}
{{- end }}

{{/* A value as an environment-variable string: whole numbers without exponent (YAML numbers are floats). */}}
{{- define "livemix.str" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
A Kubernetes quantity ("2Gi", "500M", 1073741824) in bytes, as a float (for comparisons only).
*/}}
{{- define "livemix.bytes" -}}
{{- $text := include "livemix.str" . }}
{{- $scale := dict "" 1 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- mulf (float64 (regexFind "^[0-9]+(\\.[0-9]+)?" $text)) (index $scale (regexReplaceAll "^[0-9]+(\\.[0-9]+)?" $text "") | default 0) }}
{{- end }}

{{/*
The extension hooks every component has: extraEnv (env entries), extraVolumeMounts, extraVolumes and
extraContainers (sidecars, templated with tpl). Call with (dict "ctx" $ "component" "control" "hook" "extraEnv"
"indent" 12); renders nothing when the value is empty or absent.
*/}}
{{- define "livemix.extraHook" -}}
{{- $values := index .ctx.Values .component }}
{{- with (get $values .hook) }}
{{- if eq $.hook "extraContainers" }}
{{- tpl (toYaml .) $.ctx | nindent (int $.indent) }}
{{- else }}
{{- toYaml . | nindent (int $.indent) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
NetworkPolicy egress rules shared by the control node and the edges. DNS: UDP and TCP 53 to networkPolicy.egress.dnsTo
(empty: anywhere). Call with the root context.
*/}}
{{- define "livemix.netpol.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with .Values.networkPolicy.egress.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Egress to the backing services. Call with (dict "ctx" $ "database" true): the control node uses PostgreSQL and
memcached as well as S3 and Pub/Sub; the edges only S3 and Pub/Sub. In dev mode: the release's dev pods.
*/}}
{{- define "livemix.netpol.backendsEgress" -}}
{{- $v := .ctx.Values }}
{{- $np := $v.networkPolicy.egress }}
{{- if $v.dev.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "livemix.selectorLabels" (dict "ctx" .ctx "component" "") | nindent 10 }}
        matchExpressions:
          - key: app.kubernetes.io/component
            operator: In
            values: ["postgresql", "memcached", "s3", "pubsub"]
{{- else }}
{{- $ports := list }}
{{- if .database }}
{{- $ports = append $ports (int $v.externalDatabase.port) }}
{{- with $v.memcached.url }}
{{- $ports = append $ports (int (regexReplaceAll "^memcache://[^:/]*:?([0-9]*).*$" . "${1}" | default "11211")) }}
{{- end }}
{{- end }}
{{- with $v.s3.endpoint }}
{{- $port := regexReplaceAll "^https?://[^:/]*:?([0-9]*).*$" . "${1}" }}
{{- $ports = append $ports (int (default (ternary "80" "443" (hasPrefix "http://" .)) $port)) }}
{{- else }}
{{- $ports = append $ports 443 }}
{{- end }}
{{- with $v.pubsub.emulatorHost }}
{{- $ports = append $ports (int (regexReplaceAll "^.*:([0-9]+)$" . "${1}")) }}
{{- else }}
{{- $ports = append $ports 443 }}
{{- end }}
{{- range $np.backendPorts }}
{{- $ports = append $ports (int .) }}
{{- end }}
- ports:
    {{- range $ports | uniq }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.backendsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
