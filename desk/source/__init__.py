"""The source interface: guidance, a codename, and the submit form. Works with JavaScript off."""

from desk.source.views import blueprint

__all__ = ["blueprint"]
