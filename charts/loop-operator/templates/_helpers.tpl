{{/* Labels of every object, beside the ones config/ gives. */}}
{{- define "loop-operator.labels" -}}
app.kubernetes.io/part-of: tenire
app.kubernetes.io/name: loop-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The manager's pod labels, its Deployment's and Service's selector. */}}
{{- define "loop-operator.selectorLabels" -}}
app.kubernetes.io/name: loop-operator
app.kubernetes.io/component: manager
{{- end }}

{{- define "loop-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
