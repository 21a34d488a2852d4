"""Errors raised on bad input. Each message names the file, field or shape at fault."""


class TffaceError(ValueError):
    """Base class of tfface's input errors (a ``ValueError``)."""


class DataError(TffaceError):
    """A data file, image, record or array is missing, unreadable or malformed."""


class ConfigError(TffaceError):
    """A recipe or config has an unknown key, a wrong type or a value out of range."""
