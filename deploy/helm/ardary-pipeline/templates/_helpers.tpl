{{- define "ardary.name" -}}{{ .Release.Name }}-ardary{{- end -}}

{{- define "ardary.labels" -}}
app.kubernetes.io/name: ardary-pipeline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ardary.secretName" -}}
{{- if .Values.secretName -}}{{ .Values.secretName }}{{- else -}}{{ include "ardary.name" . }}-secrets{{- end -}}
{{- end -}}

{{- define "ardary.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}

{{/* Config from the ConfigMap and secrets from the Secret, as environment variables. */}}
{{- define "ardary.envFrom" -}}
- configMapRef:
    name: {{ include "ardary.name" . }}-config
- secretRef:
    name: {{ include "ardary.secretName" . }}
    optional: true
{{- end -}}

{{/* Where the Secrets of certificate files are mounted (read-only), and each file's path. */}}
{{- define "ardary.kafkaTlsDir" -}}/etc/ardary/kafka-tls{{- end -}}
{{- define "ardary.registryTlsDir" -}}/etc/ardary/registry-tls{{- end -}}

{{/* Refuse values that would start pods with settings the pipeline rejects at start-up. */}}
{{- define "ardary.checkSecurity" -}}
{{- $kafka := .Values.kafka -}}
{{- $sasl := hasPrefix "SASL_" $kafka.securityProtocol -}}
{{- $ssl := has $kafka.securityProtocol (list "SSL" "SASL_SSL") -}}
{{- if and $sasl (not (and $kafka.sasl.mechanism $kafka.sasl.username)) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.mechanism and kafka.sasl.username (the password: the Secret's KAFKA_SASL_PASSWORD)" $kafka.securityProtocol) -}}
{{- end -}}
{{- if and (not $sasl) (or $kafka.sasl.mechanism $kafka.sasl.username) -}}
{{- fail (printf "kafka.sasl.* is set but kafka.securityProtocol=%s uses no SASL" $kafka.securityProtocol) -}}
{{- end -}}
{{- if and $sasl (not .Values.secretName) (not .Values.secrets.KAFKA_SASL_PASSWORD) -}}
{{- fail "KAFKA_SASL_PASSWORD: set secrets.KAFKA_SASL_PASSWORD, or name an existing Secret holding it (secretName)" -}}
{{- end -}}
{{- $tls := $kafka.tls -}}
{{- if and (or $tls.caKey $tls.certKey $tls.keyKey) (not $tls.secretName) -}}
{{- fail "kafka.tls.caKey/certKey/keyKey name keys of a Secret: set kafka.tls.secretName" -}}
{{- end -}}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) -}}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE)" -}}
{{- end -}}
{{- if and $tls.secretName (not (or $tls.caKey $tls.certKey)) -}}
{{- fail "kafka.tls.secretName: name the files to mount, kafka.tls.caKey and/or kafka.tls.certKey + keyKey" -}}
{{- end -}}
{{- if and $tls.secretName (not $ssl) -}}
{{- fail (printf "kafka.tls.secretName is set but kafka.securityProtocol=%s uses no TLS" $kafka.securityProtocol) -}}
{{- end -}}
{{- $registry := .Values.schemaRegistry -}}
{{- if ne (empty $registry.tls.caKey) (empty $registry.tls.secretName) -}}
{{- fail "schemaRegistry.tls.secretName and schemaRegistry.tls.caKey go together (SCHEMA_REGISTRY_CA_FILE)" -}}
{{- end -}}
{{- if and (or $registry.username $registry.tls.secretName) (not $registry.url) -}}
{{- fail "schemaRegistry.username/tls need schemaRegistry.url" -}}
{{- end -}}
{{- if and $registry.username (not .Values.secretName) (not .Values.secrets.SCHEMA_REGISTRY_PASSWORD) -}}
{{- fail "SCHEMA_REGISTRY_PASSWORD: set secrets.SCHEMA_REGISTRY_PASSWORD, or name an existing Secret holding it (secretName)" -}}
{{- end -}}
{{- end -}}

{{/* The pod volumes of the certificate Secrets: only the named keys, readable by fsGroup. */}}
{{- define "ardary.tlsVolumes" -}}
{{- $tls := .Values.kafka.tls -}}
{{- if $tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $tls.secretName }}
    defaultMode: 0440
    items:
      {{- range $key := list $tls.caKey $tls.certKey $tls.keyKey | compact }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- end }}
{{- $registry := .Values.schemaRegistry.tls -}}
{{- if $registry.secretName }}
- name: registry-tls
  secret:
    secretName: {{ $registry.secretName }}
    defaultMode: 0440
    items:
      {{- range $key := list $registry.caKey | compact }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "ardary.tlsMounts" -}}
{{- if .Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: {{ include "ardary.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.schemaRegistry.tls.secretName }}
- name: registry-tls
  mountPath: {{ include "ardary.registryTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod annotations: a changed ConfigMap (or generated Secret) rolls the pods, so a new
     username or password reaches every process with `helm upgrade`. An existing Secret
     (secretName) is not rendered here: roll the pods yourself after changing it. */}}
{{- define "ardary.podAnnotations" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secretName }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}
