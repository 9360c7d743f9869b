"""Inference-time tools: BatchNorm folding, the oneDNN-friendly resize, FLOP counting and the
Paddle Inference predictor for exported models."""
