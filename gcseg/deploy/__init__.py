"""Inference-time tools: BatchNorm folding, the oneDNN-friendly resize, FLOP counting, the
evaluation engine, ONNX conversion (paddle2onnx) and the Paddle Inference / ONNX Runtime
runners for exported models."""
