"""Inference-time tools: exporting a static program (and ONNX through paddle2onnx), BatchNorm
folding, and the Paddle Inference / ONNX Runtime runners for exported models."""
