"""Errors that reach users as one line.

Every problem caused by input (a malformed file, an unknown id, a bad setting, a
corrupt checkpoint) is raised as a :class:`RecozooError`. The CLI prints its
message on one line of stderr and exits non-zero; it never shows a traceback for
these. Library users can catch the base class.
"""

from __future__ import annotations

from pathlib import Path


class RecozooError(Exception):
    """Base class of every user-facing recozoo error; its message is one line."""

    exit_code = 1

    def __str__(self) -> str:  # keep it one line, whatever was passed in
        return " ".join(super().__str__().split())


class DataError(RecozooError):
    """Bad input data; the message names the file, the line and the field when known."""

    def __init__(self, message: str, *, path: str | Path | None = None,
                 line: int | None = None, field: str | None = None):
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        self.path, self.line, self.field = path, line, field
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class SettingsError(RecozooError):
    """A hyperparameter or option that is unknown or out of range."""

    exit_code = 2


class DatasetNotFound(RecozooError):
    """A dataset that is unknown, or known but not prepared/downloaded yet."""


class CheckpointError(RecozooError):
    """A checkpoint or saved model that cannot be read or does not fit the data."""


class RegistryError(RecozooError):
    """Two plugins registered one name, or a name nobody registered."""


class RecozooWarning(UserWarning):
    """Input that is accepted but probably not meant (e.g. implausible ratings); the CLI shows it as
    one line on stderr (``recozoo: warning: ...``)."""
