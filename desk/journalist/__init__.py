"""The journalist interface: its own app, port and cookie; works without JavaScript."""

from desk.journalist.admin import blueprint as admin_blueprint
from desk.journalist.views import blueprint

__all__ = ["admin_blueprint", "blueprint"]
