"""Training, evaluation and prediction: the loop and its hooks, checkpoints, metrics, test-time
inference and the choice of forward backend."""
