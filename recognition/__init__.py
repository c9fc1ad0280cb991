"""Micro-DualNet: TSM-ResNet backbone, Spatial Entity Module, ST/TS dual paths, entity routing,
MAC loss, and every ablation variant of the paper as a config."""
