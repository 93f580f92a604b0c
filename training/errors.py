"""Errors the user can fix; `train.py` prints their message as one sentence and exits with 2."""


class InputError(Exception):
    """Bad input (a missing folder, a malformed file, too few images); says what to do next."""
