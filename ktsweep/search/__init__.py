"""The engine: a config becomes a Keras Tuner oracle, Ray trials and MLflow runs."""
