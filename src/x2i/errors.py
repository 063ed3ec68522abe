"""The one error type a user sees: what is wrong and what to do, in one line."""


class X2IError(Exception):
    """Bad input or a model that does not fit. The CLI prints it as one line and exits with code 2."""
