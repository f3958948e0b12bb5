{{/* The name of every object. */}}
{{- define "quayctl.name" -}}
{{- .Values.name | default "quayctl-controller" | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* Where everything of the chart lives: namespace.name, else the release namespace. */}}
{{- define "quayctl.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* Labels of every object: the project's own, then Helm's. */}}
{{- define "quayctl.labels" -}}
app.kubernetes.io/name: quayctl-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The ServiceAccount the admission policy restricts. */}}
{{- define "quayctl.serviceAccount" -}}
system:serviceaccount:{{ include "quayctl.namespace" . }}:{{ include "quayctl.name" . }}
{{- end -}}

{{/* The key of config.startupTaint (`key`, `key=value` or `key=value:Effect`). */}}
{{- define "quayctl.startupTaintKey" -}}
{{- $t := .Values.config.startupTaint | default "" | toString -}}
{{- (split ":" (split "=" $t)._0)._0 -}}
{{- end -}}

{{/* One CronJob's pod template spec: `only` = STARTUP_TAINT_ONLY. */}}
{{- define "quayctl.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "quayctl.name" $root }}
restartPolicy: Never
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
- name: quayctl-controller
  image: {{ printf "%s:%s" $root.Values.image.repository ($root.Values.image.tag | default $root.Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  envFrom:
  - configMapRef:
      name: {{ include "quayctl.name" $root }}
  env:
  {{- if .only }}
  - name: STARTUP_TAINT_ONLY
    value: "true"
  - name: STARTUP_TAINT_WATCH_SECONDS
    value: {{ $root.Values.joining.watchSeconds | int64 | toString | quote }}
  - name: PULLER_KIND
    value: {{ $root.Values.joining.pullerKind | quote }}
  {{- end }}
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  resources:
    {{- toYaml $root.Values.resources | nindent 4 }}
{{- end -}}

{{/* IMAGES_FROM from .Values.imagesFrom, or nothing when it is off. */}}
{{- define "quayctl.imagesFrom" -}}
{{- $f := .Values.imagesFrom -}}
{{- $clauses := list -}}
{{- if $f.namespaces }}{{ $clauses = append $clauses (printf "namespaces=%s" (join "," $f.namespaces)) }}{{ end -}}
{{- if $f.namespaceSelector }}{{ $clauses = append $clauses (printf "namespace-selector=%s" $f.namespaceSelector) }}{{ end -}}
{{- if $clauses -}}
{{- if $f.selector }}{{ $clauses = append $clauses (printf "selector=%s" $f.selector) }}{{ end -}}
{{- if $f.kinds }}{{ $clauses = append $clauses (printf "kinds=%s" (join "," $f.kinds)) }}{{ end -}}
{{- join ";" $clauses -}}
{{- end -}}
{{- end -}}
