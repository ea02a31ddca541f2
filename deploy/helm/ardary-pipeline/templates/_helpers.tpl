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
