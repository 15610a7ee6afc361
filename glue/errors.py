"""Errors a user can act on.

A :class:`GlueError` is a mistake in the user's input or environment (bad data, bad settings, a
missing file). The CLI prints its message without a traceback and exits non-zero; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class GlueError(Exception):
    """A problem the user can fix; its message says what, where, and which rule was broken."""

    exit_code = 1


class SettingsError(GlueError):
    """The settings (environment or params.yaml) are invalid or incomplete."""

    exit_code = 2


class ValidationFailed(GlueError):
    """One or more data batches failed the validation gate and were quarantined."""

    exit_code = 3
