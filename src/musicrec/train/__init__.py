"""Training: fit a model on a split, and tune its hyperparameters with Optuna."""
