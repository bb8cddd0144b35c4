"""``python -m ktsweep``: the same as the ``ktsweep`` command."""

from ktsweep.cli.main import main

if __name__ == "__main__":
    main()
