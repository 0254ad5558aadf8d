"""Artifacts: deterministic archives, their manifests and the content-addressed store."""
