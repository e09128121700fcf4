{{/* The `job` label of the targets the alert rules watch. A ServiceMonitor gives its
targets the Service's name as job, a PodMonitor "<its namespace>/<its name>"; set
prometheusRule.operatorJob / servingJob when another scrape config collects them. */}}

{{- define "knn-operator.alerts.operatorJob" -}}
{{- .Values.prometheusRule.operatorJob | default (printf "%s-metrics" (include "knn-operator.fullname" .)) }}
{{- end }}

{{- define "knn-operator.alerts.servingJob" -}}
{{- .Values.prometheusRule.servingJob | default (printf "%s/%s-serving" .Release.Namespace (include "knn-operator.fullname" .)) }}
{{- end }}
