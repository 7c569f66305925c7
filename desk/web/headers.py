"""Security headers on every response of both interfaces (and the gunicorn error pages)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from flask import Response, request
from werkzeug.routing import RequestRedirect

# Every powerful feature a browser could grant a page, denied: the desk needs none of them.
DENIED_FEATURES = (
    "accelerometer", "ambient-light-sensor", "attribution-reporting", "autoplay", "battery",
    "bluetooth", "browsing-topics", "camera", "clipboard-read", "clipboard-write",
    "compute-pressure", "display-capture", "document-domain", "encrypted-media",
    "fullscreen", "gamepad", "geolocation", "gyroscope", "hid", "identity-credentials-get",
    "idle-detection", "interest-cohort", "join-ad-interest-group", "keyboard-map",
    "local-fonts", "magnetometer", "microphone", "midi", "otp-credentials", "payment",
    "picture-in-picture", "publickey-credentials-create", "publickey-credentials-get",
    "run-ad-auction", "screen-wake-lock", "serial", "speaker-selection",
    "storage-access", "usb", "web-share", "window-management", "xr-spatial-tracking",
)

SECURITY_HEADERS = {
    # Scripts only from the desk itself (the optional resumable-upload enhancement), and
    # connections only back to it.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Permissions-Policy": ", ".join(f"{feature}=()" for feature in DENIED_FEATURES),
}


def add_security_headers(response: Response) -> Response:
    """Add the desk's headers; drop the ones that tell a version or date a page; make a
    redirect's Location a path on this desk."""
    response.headers.update(SECURITY_HEADERS)
    # Nothing that tells a version, and no validators: on pages they are made for one request,
    # and on static files they would date the install (desk/app.py, _static_file).
    response.headers.pop("Server", None)
    response.headers.pop("ETag", None)
    response.headers.pop("Last-Modified", None)
    if "Location" in response.headers:
        response.headers["Location"] = local_location(response.headers["Location"])
    return response


def local_location(location: str) -> str:
    """`location` as a path on this desk, the only place it sends anyone. The desk's own
    redirects are paths already; Werkzeug's routing redirects (to a rule's trailing slash, or
    merged slashes) are absolute URLs built from the request's Host header, which the client
    chooses: kept as they were, they would repeat any Host to whoever asked. A path starting
    with two slashes (or a slash and a backslash) would name another host, so leading ones are
    reduced to one."""
    parts = urlsplit(location)
    return urlunsplit(("", "", "/" + parts.path.lstrip("/\\"), parts.query, parts.fragment))


def local_routing_redirect() -> None:
    """Make the router's redirect, if it has one for this request, lead to a path on this desk
    (a before_request hook): Werkzeug builds it from the Host header as an absolute URL and
    repeats that in the answer's body too."""
    redirect = request.routing_exception
    if isinstance(redirect, RequestRedirect):
        request.routing_exception = RequestRedirect(local_location(redirect.new_url))
