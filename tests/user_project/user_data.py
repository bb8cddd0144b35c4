"""A user's own data loader: digits as 8x8 images, returned as (x, y)."""

from sklearn.datasets import load_digits


def load(n=900):
    digits = load_digits()
    return (digits.data[:n] / 16.0).astype("float32").reshape(-1, 8, 8), digits.target[:n]


def load_splits():
    x, y = load()
    return (x[:600], y[:600]), (x[600:750], y[600:750]), (x[750:], y[750:])


def load_mismatched():
    x, y = load()
    return x, y[:-5]
