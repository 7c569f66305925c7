"""The journalist interface: its own app, port and cookie; works without JavaScript."""

from desk.web.journalist.account import blueprint as account_blueprint
from desk.web.journalist.admin import blueprint as admin_blueprint
from desk.web.journalist.views import blueprint

__all__ = ["account_blueprint", "admin_blueprint", "blueprint"]
