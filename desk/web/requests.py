"""Request classes that decide where an uploaded file part may go: never to disk."""

from __future__ import annotations

import io
from typing import IO

from flask import Request
from werkzeug.exceptions import BadRequest


class SourceRequest(Request):
    """A request that refuses to spool an uploaded file anywhere.

    Werkzeug's default stream factory writes any file part over 500 KiB to a plaintext temp
    file. Only `ingest_form` reads uploads, streaming them into gpg; if anything else ever
    parses a file part (request.files, request.form on a multipart body), it fails loudly here.
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None,
                         ) -> IO[bytes]:
        raise BadRequest("file parts are only accepted by the submit form")


class JournalistRequest(Request):
    """A request whose small file uploads (public keys) stay in memory, never on disk."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None,
                         ) -> IO[bytes]:
        return io.BytesIO()
