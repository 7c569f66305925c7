"""Typed SQLAlchemy models: clear-text columns hold no names, types, hashes or instants."""

from desk.models.base import Base
from desk.models.custody import CustodyRecord
from desk.models.instance import Instance
from desk.models.journalist import Journalist, JournalistSession
from desk.models.reply import Reply
from desk.models.source import Source, SourceSession
from desk.models.submission import Submission
from desk.models.upload import Upload

__all__ = ["Base", "CustodyRecord", "Instance", "Journalist", "JournalistSession", "Reply",
           "Source", "SourceSession", "Submission", "Upload"]
