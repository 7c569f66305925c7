"""Errors of the online desk. `source_message` is what a source may see: calm, revealing nothing."""

from __future__ import annotations

import errno

# What a write reports when the disk (or the desk user's quota) is full.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLite's primary result code for "database or disk is full".
SQLITE_FULL = 13


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


class EmptySending(DeskError):
    """The form arrived with no message text and no file."""

    status = 400
    source_message = N_("Nothing was sent: write a message or choose at least one file.")


class BadSending(DeskError):
    """The upload was malformed, incomplete or its form had expired; nothing was kept."""

    status = 400
    source_message = N_("Your upload could not be completed, so nothing was kept. "
                        "Please open the form again and send it once more.")


class TooManyFiles(DeskError):
    """A form post carried more files than MAX_FORM_FILES; nothing was kept. The source sees
    the words of a post that is too large: send fewer files at a time."""

    status = 413
    source_message = N_("That was more than this desk accepts at once, so nothing was "
                        "kept. Please send fewer or smaller files at a time.")


class JournalistError(DeskError):
    """A journalist or key operation was refused; the message says why."""


class NoSpace(DeskError):
    """The disk that holds the desk's data is (nearly) full, so a write was refused and undone;
    nothing was kept. Free space on it: the desk accepts uploads again at once, no restart."""

    status = 507
    source_message = N_("The desk has no room for what you sent right now, so nothing was "
                        "kept. Please try again later.")


class QuotaReached(NoSpace):
    """What a source sent would take it, or all sources together, past what the desk lets
    them keep (DESK_QUOTA_PER_SOURCE, DESK_QUOTA_ALL_SOURCES); nothing was kept. The source
    sees the same calm words as for a full disk: its quota is not something to reveal."""


def is_disk_full(error: BaseException | None) -> bool:
    """True if `error` says the disk is full: NoSpace, ENOSPC or EDQUOT from a write, or
    SQLite's SQLITE_FULL (also inside SQLAlchemy's wrapper, which keeps it as `orig`)."""
    for _ in range(3):  # the error, the driver error it wraps, and one more
        if error is None:
            return False
        if isinstance(error, NoSpace):
            return True
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == SQLITE_FULL:
            return True
        wrapped = getattr(error, "orig", None)
        error = wrapped if isinstance(wrapped, BaseException) else None
    return False


class DamagedKeys(DeskError):
    """Key material in the data directory is damaged (a power cut while it was written, or a
    bad copy); the message says which and how to recover."""
