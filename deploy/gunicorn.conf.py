"""gunicorn settings for a desk interface, for running gunicorn itself instead of `desk serve`:

    DESK_DATA=/var/lib/desk gunicorn -c deploy/gunicorn.conf.py \\
        --bind 127.0.0.1:8080 "desk.ops.serve:interface_app('source')"
    DESK_DATA=/var/lib/desk gunicorn -c deploy/gunicorn.conf.py \\
        --bind 127.0.0.1:8081 "desk.ops.serve:interface_app('journalist')"

`desk serve` (what the systemd units run) applies exactly these settings. They are kept in
desk/ops/serve.py, `GUNICORN_SETTINGS`, so that an installed desk has them without this folder;
the comments there say why each is set. In short:

- worker_class "desk.ops.worker.DeskWorker" (gunicorn's gthread with read deadlines, a
  thread-aware accept and a descriptor budget), 2 workers x 64 threads, 200 connections per
  worker: a sync worker is killed when one request outlives `timeout`, which ends a slow
  upload; a gthread worker's `timeout` watches only its main loop, so an upload over Tor may
  take hours.
- no access log, and an error log that never quotes a request line, header or URI.
- forwarded_allow_ips and proxy_allow_ips empty: behind Tor every client is 127.0.0.1.
- no Server header, no worker recycling, no control socket.
"""

from desk.ops.serve import GUNICORN_SETTINGS

globals().update(GUNICORN_SETTINGS)

# Loopback only: tor connects from 127.0.0.1. Never bind a public address; --bind on the
# command line chooses the port.
bind = ["127.0.0.1:8080"]
