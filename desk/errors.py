"""Errors of the online desk. `source_message` is what a source may see: calm, revealing nothing."""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark a message sources may read for translation (babel.cfg extracts it); the page that
    shows it translates it."""
    return message


class DeskError(Exception):
    """Something the desk could not do."""

    status = 500
    source_message = N_("Something went wrong on our side. Nothing you sent was kept. Try again.")


class ConfigError(DeskError):
    """A DESK_* setting is wrong; the message names it."""


class NotInitialised(DeskError):
    """The data directory has not been set up: run `desk init`."""


class NotAcceptingSubmissions(DeskError):
    """No journalist key is valid, so the desk refuses submissions rather than store them badly."""

    status = 503
    source_message = N_("This desk is not accepting submissions right now. Nothing was sent. "
                        "Please try again later.")


class EmptySubmission(DeskError):
    """The form arrived with no message text and no file."""

    status = 400
    source_message = N_("Nothing was sent: write a message or choose at least one file.")


class BadSubmission(DeskError):
    """The upload was malformed, incomplete or its form had expired; nothing was kept."""

    status = 400
    source_message = N_("Your sending could not be completed, so nothing was kept. "
                        "Please open the form again and send it once more.")


class JournalistError(DeskError):
    """A journalist or key operation was refused; the message says why."""
