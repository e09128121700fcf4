"""Errors that carry a message meant for the user, not a traceback."""


class InputError(Exception):
    """Bad input: a source, option or file that cannot be used as given."""


class ArtifactError(Exception):
    """An artifact that is missing, corrupt or does not match its manifest."""
