"""Serving an interface under gunicorn with threaded workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

# A sync worker is killed after `timeout` seconds inside one request, which ends any upload
# slower than that; gthread workers keep a slow Tor client's upload alive for as long as it takes.
GUNICORN_SETTINGS: dict[str, Any] = {
    "worker_class": "gthread",
    "workers": 2,
    "threads": 32,
    "timeout": 120,
    "graceful_timeout": 60,
    "keepalive": 5,
    # No access log: it would record when someone used the desk.
    "accesslog": None,
    "errorlog": "-",
    "loglevel": "warning",
    # Behind Tor every client is 127.0.0.1; never trust a forwarded address.
    "forwarded_allow_ips": "",
    "proxy_allow_ips": "",
}


class DeskServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application that loads the desk from a factory in each worker."""

    def __init__(self, factory: Callable[[], Flask], host: str, port: int) -> None:
        self._factory = factory
        self._settings = {**GUNICORN_SETTINGS, "bind": f"{host}:{port}"}
        super().__init__()

    def load_config(self) -> None:
        """Apply the desk's gunicorn settings."""
        for key, value in self._settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker."""
        return self._factory()


def serve(factory: Callable[[], Flask], host: str, port: int) -> None:
    """Run an interface until interrupted."""
    DeskServer(factory, host, port).run()
