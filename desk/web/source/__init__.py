"""The source interface: guidance, a codename, and the submit form. Works with JavaScript off."""

from desk.web.source.views import blueprint

__all__ = ["blueprint"]
