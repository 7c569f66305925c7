"""Security headers on every response of both interfaces (and the gunicorn error pages)."""

from __future__ import annotations

from flask import Response

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
    """Add the desk's headers; drop the ones that tell a version or date a page."""
    response.headers.update(SECURITY_HEADERS)
    # Nothing that tells a version, and no validators: on pages they are made for one request,
    # and on static files they would date the install (desk/app.py, _static_file).
    response.headers.pop("Server", None)
    response.headers.pop("ETag", None)
    response.headers.pop("Last-Modified", None)
    return response
