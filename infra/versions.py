"""Pinned versions of what the cluster installs: one place to bump, reviewed together."""

from __future__ import annotations

# Karpenter 1.11 supports Kubernetes 1.29-1.35 (compatibility matrix); the chart lives in public ECR.
KARPENTER_CHART = "oci://public.ecr.aws/karpenter/karpenter"
KARPENTER_VERSION = "1.11.1"

KEDA_REPOSITORY = "https://kedacore.github.io/charts"
KEDA_VERSION = "2.19.0"

DCGM_EXPORTER_REPOSITORY = "https://nvidia.github.io/dcgm-exporter/helm-charts"
# Chart 4.8.3 ships exporter 4.6.0-4.8.3 (NVIDIA/dcgm-exporter helm-charts index).
DCGM_EXPORTER_VERSION = "4.8.3"

# NVIDIA's device plugin, for GPU nodes of families other than Bottlerocket (whose NVIDIA variants ship one).
NVIDIA_DEVICE_PLUGIN_REPOSITORY = "https://nvidia.github.io/k8s-device-plugin"
NVIDIA_DEVICE_PLUGIN_VERSION = "0.17.4"

# Images of the community runtimes the chart runs when a runtime's type is not our own `diffusers`
# (the replaced sample's published images; overridable with extraValues.runtime.inferenceApi.image).
COMMUNITY_RUNTIME_IMAGES = {
    "sdwebui": "public.ecr.aws/bingjiao/sd-on-eks/sdwebui",
    "comfyui": "public.ecr.aws/bingjiao/sd-on-eks/comfyui",
}

LAMBDA_PYTHON = "3.14"
