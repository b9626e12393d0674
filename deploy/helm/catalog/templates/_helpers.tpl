{{/* Names and labels. */}}
{{- define "catalog.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "catalog.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "catalog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "catalog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "catalog.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "catalog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: catalog
{{- end -}}

{{- define "catalog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "catalog.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "catalog.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The admin port is reachable from the network only when protected (token or mutual TLS). */}}
{{- define "catalog.adminExposed" -}}
{{- if or .Values.secrets.adminToken.secretName (and .Values.tls.grpc.secretName .Values.tls.grpc.clientCAKey) -}}true{{- end -}}
{{- end -}}

{{/* Mounted secrets: name, secret, key, mount path and the variable that points at it. */}}
{{- define "catalog.secretFiles" -}}
{{- $s := .Values.secrets -}}
{{- $t := .Values.tls -}}
{{- $files := list -}}
{{- if $s.adminToken.secretName }}{{ $files = append $files (dict "vol" "admin-token" "secret" $s.adminToken.secretName "key" $s.adminToken.key "var" "ADMIN_TOKEN_FILE") }}{{ end -}}
{{- if $s.kafkaSASLPassword.secretName }}{{ $files = append $files (dict "vol" "kafka-sasl" "secret" $s.kafkaSASLPassword.secretName "key" $s.kafkaSASLPassword.key "var" "KAFKA_SASL_PASSWORD_FILE") }}{{ end -}}
{{- if $s.elasticsearchAPIKey.secretName }}{{ $files = append $files (dict "vol" "es-api-key" "secret" $s.elasticsearchAPIKey.secretName "key" $s.elasticsearchAPIKey.key "var" "ELASTICSEARCH_API_KEY_FILE") }}{{ end -}}
{{- if $s.elasticsearchPassword.secretName }}{{ $files = append $files (dict "vol" "es-password" "secret" $s.elasticsearchPassword.secretName "key" $s.elasticsearchPassword.key "var" "ELASTICSEARCH_PASSWORD_FILE") }}{{ end -}}
{{- if $t.kafka.secretName -}}
{{- if $t.kafka.caKey }}{{ $files = append $files (dict "vol" "kafka-tls" "secret" $t.kafka.secretName "key" $t.kafka.caKey "var" "KAFKA_TLS_CA_FILE") }}{{ end -}}
{{- if $t.kafka.certKey }}{{ $files = append $files (dict "vol" "kafka-tls" "secret" $t.kafka.secretName "key" $t.kafka.certKey "var" "KAFKA_TLS_CERT_FILE") }}{{ end -}}
{{- if $t.kafka.keyKey }}{{ $files = append $files (dict "vol" "kafka-tls" "secret" $t.kafka.secretName "key" $t.kafka.keyKey "var" "KAFKA_TLS_KEY_FILE") }}{{ end -}}
{{- end -}}
{{- if $t.elasticsearch.secretName }}{{ $files = append $files (dict "vol" "es-tls" "secret" $t.elasticsearch.secretName "key" $t.elasticsearch.caKey "var" "ELASTICSEARCH_CA_FILE") }}{{ end -}}
{{- if $t.grpc.secretName -}}
{{- $files = append $files (dict "vol" "grpc-tls" "secret" $t.grpc.secretName "key" $t.grpc.certKey "var" "GRPC_TLS_CERT_FILE") -}}
{{- $files = append $files (dict "vol" "grpc-tls" "secret" $t.grpc.secretName "key" $t.grpc.keyKey "var" "GRPC_TLS_KEY_FILE") -}}
{{- if $t.grpc.clientCAKey }}{{ $files = append $files (dict "vol" "grpc-tls" "secret" $t.grpc.secretName "key" $t.grpc.clientCAKey "var" "GRPC_TLS_CLIENT_CA_FILE") }}{{ end -}}
{{- if $t.grpc.caKey }}{{ $files = append $files (dict "vol" "grpc-tls" "secret" $t.grpc.secretName "key" $t.grpc.caKey "var" "GRPC_CLIENT_TLS_CA_FILE") }}{{ end -}}
{{- if $t.grpc.clientCAKey -}}
{{- $files = append $files (dict "vol" "grpc-tls" "secret" $t.grpc.secretName "key" $t.grpc.certKey "var" "GRPC_CLIENT_TLS_CERT_FILE") -}}
{{- $files = append $files (dict "vol" "grpc-tls" "secret" $t.grpc.secretName "key" $t.grpc.keyKey "var" "GRPC_CLIENT_TLS_KEY_FILE") -}}
{{- end -}}
{{- end -}}
{{- if $t.http.secretName -}}
{{- $files = append $files (dict "vol" "http-tls" "secret" $t.http.secretName "key" $t.http.certKey "var" "HTTP_TLS_CERT_FILE") -}}
{{- $files = append $files (dict "vol" "http-tls" "secret" $t.http.secretName "key" $t.http.keyKey "var" "HTTP_TLS_KEY_FILE") -}}
{{- end -}}
{{- if $t.console.secretName -}}
{{- $files = append $files (dict "vol" "console-tls" "secret" $t.console.secretName "key" $t.console.certKey "var" "CONSOLE_TLS_CERT_FILE") -}}
{{- $files = append $files (dict "vol" "console-tls" "secret" $t.console.secretName "key" $t.console.keyKey "var" "CONSOLE_TLS_KEY_FILE") -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/* Environment of every catalog container: ConfigMap, DATABASE_URL from its Secret, listen
     addresses, and the *_FILE variables of the mounted secrets. */}}
{{- define "catalog.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.secretName }}
      key: {{ .Values.database.secretKey }}
- name: HTTP_ADDR
  value: "0.0.0.0:{{ .Values.service.httpPort }}"
- name: GRPC_ADDR
  value: {{ if include "catalog.adminExposed" . }}"0.0.0.0:{{ .Values.service.grpcPort }}"{{ else }}"127.0.0.1:{{ .Values.service.grpcPort }}"{{ end }}
- name: METRICS_ADDR
  value: "0.0.0.0:{{ .Values.service.metricsPort }}"
# The operations console (api pods) listens on the pod's loopback only: reach it with
# `kubectl port-forward deploy/<release>-catalog-api 8081` and log in with the admin token.
- name: CONSOLE_ADDR
  value: "127.0.0.1:8081"
- name: CATALOG_DATA_DIR
  value: /var/lib/catalog
{{- range (include "catalog.secretFiles" . | fromJsonArray) }}
- name: {{ .var }}
  value: /etc/catalog/{{ .vol }}/{{ .key }}
{{- end }}
{{- end -}}

{{- define "catalog.volumeMounts" -}}
- name: data
  mountPath: /var/lib/catalog
{{- $seen := dict -}}
{{- range (include "catalog.secretFiles" . | fromJsonArray) }}
{{- if not (hasKey $seen .vol) }}
{{- $_ := set $seen .vol true }}
- name: {{ .vol }}
  mountPath: /etc/catalog/{{ .vol }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "catalog.volumes" -}}
- name: data
  emptyDir: {}
{{- $seen := dict -}}
{{- range (include "catalog.secretFiles" . | fromJsonArray) }}
{{- if not (hasKey $seen .vol) }}
{{- $_ := set $seen .vol true }}
- name: {{ .vol }}
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end -}}
