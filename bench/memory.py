"""Memory over a sweep of 100 trials, per 10 trials: ``bench/scale.py`` with those defaults.

    .venv/bin/python bench/memory.py [--trials 100] [--every 10]
"""

from scale import main

if __name__ == "__main__":
    main(trials=100, every=10)
