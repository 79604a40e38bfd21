"""The one exception type that means "the user gave us something wrong".

Commands catch it at the top and print its message as a single line with a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A bad flag, path or input file, worded for the person who supplied it."""
