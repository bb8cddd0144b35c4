"""ktsweep: hyperparameter sweeps for Keras. Keras Tuner decides, Ray runs, MLflow remembers."""

__version__ = "0.1.0"
