"""Offline side: datasets, PyTorch models, training, ONNX export, evaluation."""
