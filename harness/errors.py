"""User-facing errors: the CLI prints their message and exits 2, never a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for (a suite file, a flag, a name), explained in one paragraph."""


class SuiteError(UserError):
    """A suite file that cannot be turned into cases; the message names the file, entry and field."""
