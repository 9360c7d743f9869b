"""Inference-time tools: exporting a static program, BatchNorm folding and the Paddle
Inference runtime for exported models."""
