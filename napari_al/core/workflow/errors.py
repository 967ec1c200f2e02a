"""The workflow's error types: what a person can act on, as opposed to a bug.

Front ends show these as one line (the CLI's ``napari-al: error: ...``, a message in the
widget); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class WorkflowError(ValueError):
    """A step cannot run for a reason the user can fix: the project has no classes, nothing
    to train or evaluate on, a device or weights file that cannot be used, a bad setting."""


class SettingsError(WorkflowError):
    """A setting's value is outside its range or not one of its choices; the message names
    the field and the value. ``field``: the settings field's name where one field is at fault
    (the message then starts with it), else None."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def named(self, name: str) -> SettingsError:
        """The same error with the field called ``name`` (a command-line flag, ``--lr``) at
        the start of the message; itself when no field is at fault."""
        text = str(self)
        if self.field is None or not text.startswith(self.field):
            return self
        return SettingsError(name + text[len(self.field) :], self.field)


class SettingsTypeError(SettingsError, TypeError):
    """A value of the wrong type for a setting or an argument (text where a number goes): a
    :class:`SettingsError` for the front ends' one-line handling, and a TypeError for Python
    callers. The message names the field or argument, what it takes and what it got."""


def wrong_type(name: str, takes: str, value: object) -> SettingsTypeError:
    """The error of ``name`` given ``value`` where it takes ``takes`` ("a whole number")."""
    kind = type(value).__name__
    article = "an" if kind[:1] in "aeiou" else "a"
    return SettingsTypeError(f"{name} must be {takes}; got {value!r} ({article} {kind})", name)
