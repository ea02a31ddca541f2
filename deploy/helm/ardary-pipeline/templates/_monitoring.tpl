{{/* The PromQL label matchers of this release's series: the PodMonitor's job, or
     metrics.prometheusRule.selector. */}}
{{- define "ardary.metricsMatchers" -}}
{{- with .Values.metrics.prometheusRule.selector -}}
{{ . }}
{{- else -}}
namespace="{{ .Release.Namespace }}", job="{{ .Release.Namespace }}/{{ include "ardary.name" . }}"
{{- end -}}
{{- end -}}

{{/* A PromQL selector of this release's series, plus the matchers given after the root:
     include "ardary.sel" (list $ `outcome="FAILED"`) → {namespace="…", job="…", outcome="FAILED"} */}}
{{- define "ardary.sel" -}}
{{- $matchers := list (include "ardary.metricsMatchers" (index . 0)) -}}
{{- range (rest .) }}{{ $matchers = append $matchers . }}{{ end -}}
{{ printf "{%s}" (compact $matchers | join ", ") }}
{{- end -}}

{{/* An alert's labels: its severity, then metrics.prometheusRule.alertLabels. */}}
{{- define "ardary.alertLabels" -}}
{{- $root := index . 0 -}}
severity: {{ index . 1 | quote }}
{{- with $root.Values.metrics.prometheusRule.alertLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An alert's runbook: its heading in docs/operations.md ("Alerts and dashboards"). */}}
{{- define "ardary.runbook" -}}
{{- $root := index . 0 -}}
{{ printf "%s#%s" (trimSuffix "#" $root.Values.metrics.prometheusRule.runbookBaseUrl) (index . 1 | lower) | quote }}
{{- end -}}
