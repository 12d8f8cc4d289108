{{/*
Names. One release per runtime, so the release name is the natural base of every name.
*/}}
{{- define "sd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects (NodePool, EC2NodeClass, PersistentVolume) carry the namespace to stay unique. */}}
{{- define "sd.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "sd.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The runtime name tasks are routed on (config.yaml modelsRuntime[].name). */}}
{{- define "sd.runtimeName" -}}
{{- default .Release.Name .Values.global.runtime -}}
{{- end -}}

{{- define "sd.clusterName" -}}
{{- default .Values.global.stackName .Values.global.clusterName -}}
{{- end -}}

{{- define "sd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sd.labels" -}}
helm.sh/chart: {{ include "sd.chart" . }}
{{ include "sd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.runtime.type }}
sd-on-eks/runtime: {{ include "sd.runtimeName" . | quote }}
{{- with .Values.runtime.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod labels leave out the chart version, so a chart upgrade alone does not roll (and drain) every pod. */}}
{{- define "sd.podLabels" -}}
{{ include "sd.selectorLabels" . }}
app.kubernetes.io/component: {{ .Values.runtime.type }}
sd-on-eks/runtime: {{ include "sd.runtimeName" . | quote }}
{{- with .Values.runtime.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "sd.serviceAccountName" -}}
{{- default (include "sd.fullname" .) .Values.runtime.serviceAccountName -}}
{{- end -}}

{{- define "sd.nodePoolName" -}}
{{- include "sd.clusterScopedName" . -}}
{{- end -}}

{{/*
Per runtime type defaults, as YAML to read back with fromYaml. sdwebui and comfyui facts (paths, probe
endpoints) are those of the images the replaced sample ran.
*/}}
{{- define "sd.typeDefaults" -}}
{{- if eq .Values.runtime.type "diffusers" -}}
mountPath: /models
apiPath: /sdapi/v1/
startup: /ready
readiness: /ready
liveness: /health
image: sd-async-aws/inference-api
hardened: true
{{- else if eq .Values.runtime.type "sdwebui" -}}
mountPath: /opt/ml/code/models
apiPath: /sdapi/v1/
startup: /sdapi/v1/memory
readiness: /sdapi/v1/memory
liveness: /sdapi/v1/memory
image: ""
hardened: false
{{- else -}}
mountPath: /opt/ml/code/models
apiPath: /
startup: /system_stats
readiness: /system_stats
liveness: /system_stats
image: ""
hardened: false
{{- end -}}
{{- end -}}

{{- define "sd.modelMountPath" -}}
{{- $d := fromYaml (include "sd.typeDefaults" .) -}}
{{- default $d.mountPath .Values.runtime.inferenceApi.modelMountPath -}}
{{- end -}}

{{- define "sd.apiBaseUrl" -}}
{{- $d := fromYaml (include "sd.typeDefaults" .) -}}
{{- default (printf "http://localhost:%d%s" (int .Values.runtime.inferenceApi.port) $d.apiPath) .Values.runtime.queueAgent.apiBaseUrl -}}
{{- end -}}

{{/* image reference from {repository, tag, digest}; the second argument is the default repository. */}}
{{- define "sd.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 2 -}}
{{- $repository := default (index . 1) $image.repository -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default $root.Chart.AppVersion (toString (default "" $image.tag))) -}}
{{- end -}}
{{- end -}}

{{/* Pod grace period: explicit, or the longest job plus the drain margin. */}}
{{- define "sd.gracePeriod" -}}
{{- if kindIs "invalid" .Values.runtime.terminationGracePeriodSeconds -}}
{{- add (int .Values.runtime.jobTimeoutSeconds) (int .Values.runtime.drainMarginSeconds) -}}
{{- else -}}
{{- int .Values.runtime.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "sd.modelBucket" -}}
{{- $s3 := .Values.runtime.persistence.s3 -}}
{{- if $s3.modelBucket -}}
{{- $s3.modelBucket -}}
{{- else if $s3.modelBucketArn -}}
{{- regexReplaceAll "^arn:[^:]+:s3:::([^/]+).*$" $s3.modelBucketArn "${1}" -}}
{{- end -}}
{{- end -}}

{{/* true when the chart creates the S3 PersistentVolume itself. */}}
{{- define "sd.createsVolume" -}}
{{- $p := .Values.runtime.persistence -}}
{{- if and $p.enabled (not $p.existingClaim) (not $p.existingVolume) $p.s3.enabled -}}true{{- end -}}
{{- end -}}

{{- define "sd.createsClaim" -}}
{{- $p := .Values.runtime.persistence -}}
{{- if and $p.enabled (not $p.existingClaim) -}}true{{- end -}}
{{- end -}}

{{- define "sd.modelClaimName" -}}
{{- default (printf "%s-models" (include "sd.fullname" .)) .Values.runtime.persistence.existingClaim -}}
{{- end -}}

{{/* extraEnv: a list of EnvVar objects (the sample's form) or a map of name: value. */}}
{{- define "sd.extraEnv" -}}
{{- if kindIs "slice" . -}}
{{- with . }}
{{ toYaml . }}
{{- end }}
{{- else -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
Every check that makes a release unusable, reported together so one render names all that is wrong.
Included by the Deployment, which every release renders.
*/}}
{{- define "sd.validate" -}}
{{- $errors := list -}}
{{- $v := .Values -}}
{{- range $key := list "sqsQueueUrl" "snsTopicArn" "s3Bucket" -}}
{{- if not (index $v.runtime.queueAgent $key) -}}
{{- $errors = append $errors (printf "runtime.queueAgent.%s is required" $key) -}}
{{- end -}}
{{- end -}}
{{- if and (ne $v.runtime.type "diffusers") (not $v.runtime.inferenceApi.image.repository) -}}
{{- $errors = append $errors (printf "runtime.inferenceApi.image.repository is required for runtime type %s (a user-provided image)" $v.runtime.type) -}}
{{- end -}}
{{- $grace := int (include "sd.gracePeriod" .) -}}
{{- if le $grace (int $v.runtime.jobTimeoutSeconds) -}}
{{- $errors = append $errors (printf "runtime.terminationGracePeriodSeconds (%d) must be larger than runtime.jobTimeoutSeconds (%d), or a running job is killed on scale-in" $grace (int $v.runtime.jobTimeoutSeconds)) -}}
{{- end -}}
{{- if and (include "sd.createsVolume" .) (not (include "sd.modelBucket" .)) -}}
{{- $errors = append $errors "runtime.persistence.s3.modelBucket (or modelBucketArn) is required, unless runtime.persistence.existingClaim or existingVolume is set" -}}
{{- end -}}
{{- if and $v.runtime.scaling.enabled (gt (int $v.runtime.scaling.minReplicaCount) (int $v.runtime.scaling.maxReplicaCount)) -}}
{{- $errors = append $errors "runtime.scaling.minReplicaCount must not exceed runtime.scaling.maxReplicaCount" -}}
{{- end -}}
{{- if and $v.runtime.scaling.auth.roleArn $v.runtime.scaling.auth.identityOwner -}}
{{- $errors = append $errors "runtime.scaling.auth.roleArn and runtime.scaling.auth.identityOwner are mutually exclusive" -}}
{{- end -}}
{{- if $v.karpenter.enabled -}}
{{- $k := $v.karpenter -}}
{{- if not (or $k.provisioner.capacityType.spot $k.provisioner.capacityType.onDemand) -}}
{{- $errors = append $errors "karpenter.provisioner.capacityType: at least one of spot and onDemand must be true" -}}
{{- end -}}
{{- if and (not $k.nodeTemplate.iamRole) (not $k.nodeTemplate.instanceProfile) -}}
{{- $errors = append $errors "karpenter.nodeTemplate.iamRole (or instanceProfile) is required" -}}
{{- end -}}
{{- if and (eq $k.nodeTemplate.amiFamily "Custom") (not $k.nodeTemplate.amiSelectorTerms) -}}
{{- $errors = append $errors "karpenter.nodeTemplate.amiSelectorTerms is required when amiFamily is Custom" -}}
{{- end -}}
{{- if ne $k.nodeTemplate.amiFamily "Bottlerocket" -}}
{{- $size := include "sd.osVolumeSize" . -}}
{{- if and (regexMatch "^[0-9]+(Gi|G)$" $size) (lt (int (regexFind "^[0-9]+" $size)) 100) -}}
{{- $errors = append $errors (printf "karpenter.nodeTemplate.osVolume.volumeSize (%s) must be at least 100Gi with amiFamily %s: the root volume holds the runtime images and pod storage" $size $k.nodeTemplate.amiFamily) -}}
{{- end -}}
{{- end -}}
{{- if and $k.nodeTemplate.iamRole $k.nodeTemplate.instanceProfile -}}
{{- $errors = append $errors "karpenter.nodeTemplate.iamRole and instanceProfile are mutually exclusive" -}}
{{- end -}}
{{- if and (not (include "sd.clusterName" .)) (or (not $k.nodeTemplate.subnetSelector) (not $k.nodeTemplate.securityGroupSelector)) -}}
{{- $errors = append $errors "global.stackName (or global.clusterName) is required for the default subnet and security group selectors" -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n  - %s" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}

{{/* The OS (Bottlerocket) or root (other families) volume size: the value, else the family's default. */}}
{{- define "sd.osVolumeSize" -}}
{{- $n := .Values.karpenter.nodeTemplate -}}
{{- default (ternary "20Gi" "150Gi" (eq $n.amiFamily "Bottlerocket")) $n.osVolume.volumeSize -}}
{{- end -}}

{{/* An EBS block device from a values map, leaving out unset fields (snapshotID: "" means none). */}}
{{- define "sd.ebs" -}}
{{- range $key, $value := . }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
{{ $key }}: {{ toJson $value }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
How the kubelet checks the runtime: an HTTP GET over the pod IP, or (for a runtime bound to loopback) a GET from
inside the container with the image's own Python. Arguments: exec, host, port, path.
*/}}
{{- define "sd.runtimeProbe" -}}
{{- if .exec -}}
exec:
  command:
    - python
    - -c
    - {{ printf "import urllib.request; urllib.request.urlopen('http://%s:%d%s', timeout=4)" .host (int .port) .path | quote }}
{{- else -}}
httpGet:
  path: {{ .path }}
  port: http
{{- end -}}
{{- end -}}

{{/*
checkov (make lint) suppressions, each with its reason, as checkov.io/skipN annotations. Takes the chart context
and a list of "CKV_ID=reason" strings; adds the default-namespace one when the release lives there.
*/}}
{{- define "sd.checkovSkips" -}}
{{- $ctx := index . 0 -}}
{{- $skips := index . 1 -}}
{{- if eq $ctx.Release.Namespace "default" -}}
{{- $skips = append $skips "CKV_K8S_21=The namespace is the release's (config.yaml modelsRuntime[].namespace, 'default' as in the replaced sample)" -}}
{{- end -}}
{{- range $i, $skip := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end -}}
