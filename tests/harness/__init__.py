"""What the tests and the benchmarks share: how to make a desk, run its servers, and be its
sources and journalists, in-process or over HTTP. Nothing here is a test.

- paths: where the checkout, the test fixtures and the installed commands are
- data: sizes, digests, random bytes with markers
- gpg: stock gpg, standing in for a journalist's offline machine
- desks: desks made in-process or with the `desk` command, and read back with stock gpg
- forms, tus: submit-form bodies built by hand; the tus vocabulary
- web: sources and journalists through Flask's test client
- servers: `desk serve` processes (start, wait, stop, kill as a whole, log)
- http: sources and journalists of a real server; raw sockets
- front, siege: the front (HAProxy) and Tor circuits played by PROXY lines; an attacker on the
  desk's threads (slow headers, dripping PATCHes, upload creation) and an honest source beside
- console: the offline console `desk-review`, and bundles taken apart
- needles: secrets in every form, and the scan for them
- crash, disk, refusals, tampering: the machinery of the crash, disk-full, bad-input and
  tampering tests
- fsync_audit: a command or a server run under strace, and every change it left to a power
  cut

The names used most are importable from `tests.harness` itself.
"""

from tests.harness.data import KiB, MiB, marked_data, new_markers, noise, sha256
from tests.harness.desks import (
    CHEAP_KDF,
    PASSWORDS,
    CliJournalist,
    StoredObject,
    add_account,
    cli_add_journalist,
    cli_init_desk,
    desk_config,
    desk_env,
    files_under,
    find_markers,
    fresh_code,
    kill_gpg_agents,
    let_log_in,
    new_desk,
    read_objects,
    run_desk,
)
from tests.harness.forms import CODENAME_RE, CSRF_RE, FormBody, StreamedForm, csrf_token
from tests.harness.gpg import Keypair, gpg, make_keypair, revoke
from tests.harness.http import (
    TIMEOUT,
    HttpBrowser,
    SourceSession,
    journalist_session,
    open_source_session,
)
from tests.harness.paths import DESK_COMMAND, FIXTURES, REPO, REVIEW_COMMAND, VECTORS
from tests.harness.servers import (
    CrashableServer,
    Server,
    StartFailed,
    free_port,
    start_server,
    wait_for,
)
from tests.harness.tus import OCTETS, TUS, metadata
from tests.harness.web import (
    SourceBrowser,
    TusTestSource,
    journalist_log_in,
    source_log_in,
    source_log_out,
)

__all__ = [
    "CHEAP_KDF",
    "CODENAME_RE",
    "CSRF_RE",
    "DESK_COMMAND",
    "FIXTURES",
    "OCTETS",
    "PASSWORDS",
    "REPO",
    "REVIEW_COMMAND",
    "TIMEOUT",
    "TUS",
    "VECTORS",
    "CliJournalist",
    "CrashableServer",
    "FormBody",
    "HttpBrowser",
    "Keypair",
    "KiB",
    "MiB",
    "Server",
    "SourceBrowser",
    "SourceSession",
    "StartFailed",
    "StoredObject",
    "StreamedForm",
    "TusTestSource",
    "add_account",
    "cli_add_journalist",
    "cli_init_desk",
    "csrf_token",
    "desk_config",
    "desk_env",
    "files_under",
    "find_markers",
    "free_port",
    "fresh_code",
    "gpg",
    "journalist_log_in",
    "journalist_session",
    "kill_gpg_agents",
    "let_log_in",
    "make_keypair",
    "marked_data",
    "metadata",
    "new_desk",
    "new_markers",
    "noise",
    "open_source_session",
    "read_objects",
    "revoke",
    "run_desk",
    "sha256",
    "source_log_in",
    "source_log_out",
    "start_server",
    "wait_for",
]
