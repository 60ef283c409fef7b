{{/*
Names. With release `shopmind` (or a release name containing it) every object has the name the
kustomize base gives it: shopmind-gateway, shopmind-config, ...
*/}}
{{- define "shopmind.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shopmind.fullname" -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shopmind.serviceAccountName" -}}
{{- default (include "shopmind.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "shopmind.backendsSecret" -}}
{{- default (printf "%s-backends" (include "shopmind.fullname" .)) .Values.backends.secretName -}}
{{- end -}}

{{- define "shopmind.apiKeysSecret" -}}
{{- default (printf "%s-gateway-keys" (include "shopmind.fullname" .)) .Values.gateway.apiKeys.secretName -}}
{{- end -}}

{{/*
What each workload is, from the code (not a setting): its values key, its subcommand, whether it
uses Redis, and whether it serves gRPC. `redis` decides the Redis URL, the password file and the
Redis egress policy.
*/}}
{{- define "shopmind.components" -}}
gateway: {values: gateway, args: [gateway], redis: false, grpc: true}
ingest: {values: ingest, args: [ingest], redis: false}
feature: {values: feature, args: [feature], redis: true}
inference: {values: inference, args: [inference], redis: true}
notification: {values: notification, args: [notification], redis: true}
trainer: {values: trainer, args: [trainer], redis: false}
privacy-sweep: {values: privacySweep, args: [privacy, sweep], redis: true}
{{- end -}}

{{/* The long-running services, each a Deployment; the trainer too in mode `deployment`. */}}
{{- define "shopmind.services" -}}
{{- $names := list "gateway" "ingest" "feature" "inference" "notification" -}}
{{- if eq .Values.trainer.mode "deployment" }}{{ $names = append $names "trainer" }}{{ end -}}
{{- toJson $names -}}
{{- end -}}

{{/*
The autoscaler that owns a service's replicas: "hpa", "keda" or "none". A keda service falls
back to the CPU HPA when KEDA is off; any autoscaler switched off leaves the fixed replicas.
Argument: (dict "root" $ "name" "feature").
*/}}
{{- define "shopmind.autoscaler" -}}
{{- $v := index .root.Values (index (fromYaml (include "shopmind.components" .root)) .name "values") -}}
{{- $want := default "none" $v.autoscaler -}}
{{- if and (eq $want "keda") .root.Values.keda.enabled -}}keda
{{- else if and (has $want (list "keda" "hpa")) .root.Values.hpa.enabled -}}hpa
{{- else -}}none
{{- end -}}
{{- end -}}

{{/* Labels. Selectors use name and component only, as the kustomize base does. */}}
{{- define "shopmind.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shopmind.name" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "shopmind.labels" -}}
{{ include "shopmind.selectorLabels" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: shopmind
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of objects that belong to no one workload. */}}
{{- define "shopmind.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: shopmind
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "shopmind.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Host and port of an http(s):// URL; for the OTel egress policy. */}}
{{- define "shopmind.otelPort" -}}
{{- $hostport := regexReplaceAll "^[a-z]+://([^/]+).*$" .Values.otel.endpoint "${1}" -}}
{{- if regexMatch ":[0-9]+$" $hostport -}}
{{- regexReplaceAll "^.*:([0-9]+)$" $hostport "${1}" -}}
{{- else if hasPrefix "https://" .Values.otel.endpoint -}}443
{{- else -}}80
{{- end -}}
{{- end -}}

{{/*
The pod spec of a workload. Argument: (dict "root" $ "component" "gateway" "args" (list ...)
"service" true|false "tmpSize" "64Mi" "job" true|false).
`service`: a long-running service (ports, probes); `job`: restartPolicy Never.
*/}}
{{- define "shopmind.podSpec" -}}
{{- $root := .root -}}
{{- $facts := index (fromYaml (include "shopmind.components" $root)) .component -}}
{{- $v := index $root.Values $facts.values -}}
{{- $tls := and (eq .component "gateway") $root.Values.gateway.tls.secretName -}}
{{- $redisPassword := and $facts.redis $root.Values.redis.passwordSecret.name -}}
serviceAccountName: {{ include "shopmind.serviceAccountName" $root }}
{{- if .job }}
restartPolicy: Never
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
# SIGTERM: the service stops taking work and finishes what it has within 20 s (Shutdown::GRACE);
# the gateway first sleeps 5 s in preStop. 30 s leaves room.
terminationGracePeriodSeconds: 30
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- if and .service $v.topologySpread }}
topologySpreadConstraints:
  {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "shopmind.selectorLabels" (dict "root" $root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: {{ include "shopmind.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args:
      {{- range .args }}
      - {{ . | quote }}
      {{- end }}
      {{- if .service }}
      - "--metrics-listen=0.0.0.0:9090"
      {{- end }}
    {{- if .service }}
    ports:
      {{- if $facts.grpc }}
      - name: grpc
        containerPort: 50051
        protocol: TCP
      {{- end }}
      - name: metrics
        containerPort: 9090
        protocol: TCP
    {{- end }}
    env:
      - name: SHOPMIND_CONFIG
        value: /etc/shopmind/shopmind.toml
      - name: SHOPMIND__NATS__URL
        valueFrom:
          secretKeyRef:
            name: {{ include "shopmind.backendsSecret" $root }}
            key: nats-url
      {{- if $facts.redis }}
      - name: SHOPMIND__REDIS__URL
        valueFrom:
          secretKeyRef:
            name: {{ include "shopmind.backendsSecret" $root }}
            key: redis-url
      {{- end }}
      {{- if $redisPassword }}
      - name: SHOPMIND__REDIS__PASSWORD_FILE
        value: /etc/shopmind-redis/password
      {{- end }}
      {{- if eq .component "gateway" }}
      - name: SHOPMIND__GATEWAY__API_KEYS_FILE
        value: /etc/shopmind-keys/api-keys
      - name: SHOPMIND__GATEWAY__ADMIN_KEYS_FILE
        value: /etc/shopmind-keys/admin-keys
      {{- end }}
      {{- if $tls }}
      - name: SHOPMIND__GATEWAY__TLS__CERT_FILE
        value: /etc/shopmind-tls/tls.crt
      - name: SHOPMIND__GATEWAY__TLS__KEY_FILE
        value: /etc/shopmind-tls/tls.key
      {{- if $root.Values.gateway.tls.clientCAKey }}
      - name: SHOPMIND__GATEWAY__TLS__CLIENT_CA_FILE
        value: /etc/shopmind-tls/{{ $root.Values.gateway.tls.clientCAKey }}
      {{- end }}
      {{- end }}
      {{- if $root.Values.otel.endpoint }}
      - name: SHOPMIND__TELEMETRY__OTLP_ENDPOINT
        value: {{ $root.Values.otel.endpoint | quote }}
      {{- end }}
      {{- with concat $root.Values.extraEnv ($v.extraEnv | default list) }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml $v.resources | nindent 6 }}
    {{- if and .service $facts.grpc (not $tls) }}
    startupProbe:
      grpc:
        port: 50051
      periodSeconds: 2
      failureThreshold: 30
    readinessProbe:
      grpc:
        port: 50051
        service: shopmind.v1.Gateway
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    livenessProbe:
      grpc:
        port: 50051
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    {{- else if $tls }}
    # kubelet's gRPC probe speaks no TLS: the TCP port instead.
    startupProbe:
      tcpSocket:
        port: grpc
      periodSeconds: 2
      failureThreshold: 30
    readinessProbe:
      tcpSocket:
        port: grpc
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    livenessProbe:
      tcpSocket:
        port: grpc
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    {{- else if .service }}
    # /healthz and /metrics on port 9090 come with --metrics-listen (deploy/README.md, "Probes").
    startupProbe:
      httpGet:
        path: /healthz
        port: metrics
      periodSeconds: 2
      failureThreshold: 30
    readinessProbe:
      httpGet:
        path: /healthz
        port: metrics
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 6
    {{- end }}
    {{- if eq .component "gateway" }}
    lifecycle:
      preStop:
        exec:
          command: ["/bin/sleep", "5"]
    {{- end }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      runAsNonRoot: true
      runAsUser: 10001
      runAsGroup: 10001
      capabilities:
        drop: ["ALL"]
      seccompProfile:
        type: RuntimeDefault
    volumeMounts:
      - name: config
        mountPath: /etc/shopmind
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- if eq .component "gateway" }}
      - name: api-keys
        mountPath: /etc/shopmind-keys
        readOnly: true
      {{- end }}
      {{- if $tls }}
      - name: tls
        mountPath: /etc/shopmind-tls
        readOnly: true
      {{- end }}
      {{- if $redisPassword }}
      - name: redis-password
        mountPath: /etc/shopmind-redis
        readOnly: true
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "shopmind.fullname" $root }}-config
  - name: tmp
    emptyDir:
      sizeLimit: {{ .tmpSize }}
  {{- if eq .component "gateway" }}
  - name: api-keys
    secret:
      secretName: {{ include "shopmind.apiKeysSecret" $root }}
      defaultMode: 288 # 0440
  {{- end }}
  {{- if $tls }}
  - name: tls
    secret:
      secretName: {{ $root.Values.gateway.tls.secretName }}
      defaultMode: 288 # 0440
  {{- end }}
  {{- if $redisPassword }}
  - name: redis-password
    secret:
      secretName: {{ $root.Values.redis.passwordSecret.name }}
      defaultMode: 288 # 0440
      items:
        - key: {{ $root.Values.redis.passwordSecret.key }}
          path: password
  {{- end }}
{{- end -}}

{{/* Pod template annotations: Prometheus scraping for services, the configuration's checksum. */}}
{{- define "shopmind.podAnnotations" -}}
{{- if .service -}}
prometheus.io/scrape: "true"
prometheus.io/port: "9090"
prometheus.io/path: /metrics
{{ end -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
{{- end -}}
