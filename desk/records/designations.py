"""Designations: the random two-word names journalists use for sources ("amber heron").

A designation is drawn at random, not derived from the codename, and is unique per desk.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib.resources import files

from sqlalchemy import select
from sqlalchemy.orm import Session

from desk.records.models import Source

ATTEMPTS = 50


@cache
def _words(name: str) -> tuple[str, ...]:
    text = files("desk.records").joinpath(f"wordlists/{name}.txt").read_text("utf-8")
    return tuple(text.split())


def random_designation() -> str:
    """An adjective and a noun, drawn with `secrets`."""
    return f"{secrets.choice(_words('adjectives'))} {secrets.choice(_words('nouns'))}"


def new_designation(db: Session) -> str:
    """A designation no source of this desk has yet."""
    for _ in range(ATTEMPTS):
        candidate = random_designation()
        if db.scalar(select(Source.id).where(Source.designation == candidate)) is None:
            return candidate
    # 360,000 pairs make this unreachable in practice; a number keeps it unique regardless.
    return f"{random_designation()} {secrets.randbelow(10**6)}"
