"""Kantor runtime: ONNX Runtime sessions, samplers and kernels. Never imports torch."""
