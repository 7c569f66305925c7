"""Typed SQLAlchemy models: clear-text columns hold no names, types, hashes or instants."""

from desk.models.base import Base
from desk.models.instance import Instance
from desk.models.journalist import Journalist
from desk.models.source import Source
from desk.models.submission import Submission

__all__ = ["Base", "Instance", "Journalist", "Source", "Submission"]
