{{/* Names and labels. */}}
{{- define "arno.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "arno.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "arno.selectorLabels" -}}
app.kubernetes.io/name: {{ include "arno.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "arno.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "arno.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: arno
{{- end -}}

{{- define "arno.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "arno.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag or @digest; global.imageRegistry prefixes the repository. */}}
{{- define "arno.image" -}}
{{- $repo := .Values.image.repository -}}
{{- with .Values.global.imageRegistry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Refuse combinations that would lose data or split the instance. */}}
{{- define "arno.validate" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if not .Values.database.external -}}
{{- fail "replicaCount > 1 needs PostgreSQL: SQLite serves one replica only. Set database.external=true with the URL in existingSecret (secretKeys.databaseUrl), or replicaCount=1." -}}
{{- end -}}
{{- if not (hasPrefix "s3://" .Values.storage.url) -}}
{{- fail "replicaCount > 1 needs S3 storage (storage.url=s3://bucket/prefix): objects on a pod's volume are not shared." -}}
{{- end -}}
{{- if not .Values.secretKeys.instanceKey -}}
{{- fail "replicaCount > 1 needs the instance key in existingSecret (secretKeys.instanceKey): every replica must have the same one." -}}
{{- end -}}
{{- if and .Values.persistence.enabled (not (has "ReadWriteMany" .Values.persistence.accessModes)) -}}
{{- fail "replicaCount > 1 with persistence needs accessModes [ReadWriteMany] (one data directory shared by every replica), or persistence.enabled=false." -}}
{{- end -}}
{{- end -}}
{{- if and .Values.database.external (not .Values.secretKeys.databaseUrl) -}}
{{- fail "database.external=true needs the PostgreSQL URL in existingSecret: set existingSecret and secretKeys.databaseUrl." -}}
{{- end -}}
{{- $keys := list .Values.secretKeys.databaseUrl .Values.secretKeys.s3AccessKeyId .Values.secretKeys.s3SecretAccessKey .Values.secretKeys.instanceKey .Values.secretKeys.auditStreamToken -}}
{{- if and (not .Values.existingSecret) (gt (len (compact $keys)) 0) -}}
{{- fail "secretKeys name keys of existingSecret: set existingSecret to the Secret's name." -}}
{{- end -}}
{{- if ne (empty .Values.secretKeys.s3AccessKeyId) (empty .Values.secretKeys.s3SecretAccessKey) -}}
{{- fail "secretKeys.s3AccessKeyId and secretKeys.s3SecretAccessKey go together." -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the server and the migration Job: secrets as files. */}}
{{- define "arno.secretEnv" -}}
{{- $keys := .Values.secretKeys -}}
{{- if $keys.databaseUrl }}
- name: ARNO_DATABASE_URL_FILE
  value: /etc/arno/secrets/{{ $keys.databaseUrl }}
{{- end }}
{{- if $keys.s3AccessKeyId }}
- name: ARNO_S3_ACCESS_KEY_ID_FILE
  value: /etc/arno/secrets/{{ $keys.s3AccessKeyId }}
- name: ARNO_S3_SECRET_ACCESS_KEY_FILE
  value: /etc/arno/secrets/{{ $keys.s3SecretAccessKey }}
{{- end }}
{{- if $keys.instanceKey }}
- name: ARNO_SECRET_KEY_FILE
  value: /etc/arno/secrets/{{ $keys.instanceKey }}
{{- end }}
{{- if $keys.auditStreamToken }}
- name: ARNO_AUDIT_STREAM_TOKEN_FILE
  value: /etc/arno/secrets/{{ $keys.auditStreamToken }}
{{- end }}
{{- end -}}

{{/* The restricted Pod Security Standard, for the pod and each container. */}}
{{- define "arno.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "arno.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
