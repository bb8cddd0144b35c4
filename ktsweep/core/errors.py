"""The two kinds of failure: a trial's own, and the sweep's.

As in Keras Tuner (``FailedTrialError`` vs ``FatalError``): a trial error is
recorded on that trial and the sweep goes on; a fatal error stops the sweep
with one line. ``UsageError`` is bad user input caught before anything runs.
"""


class KtsweepError(Exception):
    """Base of ktsweep's own errors: the message is one line a user can act on."""


class UsageError(KtsweepError):
    """Bad config, argument or missing input: nothing has run yet."""


class TrialError(KtsweepError):
    """This trial cannot finish (e.g. its hyperparameters break the model)."""


class FatalError(KtsweepError):
    """No trial can finish (e.g. the objective is never logged): stop the sweep."""
