"""The package's user-facing error type: caught by the CLI and printed as one line."""


class UserInputError(ValueError):
    """Bad input from a user (file, marker, shape, value, path). The message names the problem."""
