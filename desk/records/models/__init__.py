"""Typed SQLAlchemy models: clear-text columns hold no names, types, hashes or instants."""

from desk.records.models.base import Base
from desk.records.models.custody import CustodyRecord
from desk.records.models.instance import Instance
from desk.records.models.item import Item
from desk.records.models.journalist import AccountEvent, Journalist, JournalistSession
from desk.records.models.reply import Reply
from desk.records.models.source import Source, SourceSession
from desk.records.models.upload import Upload

__all__ = ["AccountEvent", "Base", "CustodyRecord", "Instance", "Item", "Journalist",
           "JournalistSession", "Reply", "Source", "SourceSession", "Upload"]
