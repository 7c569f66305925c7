"""Bytes in from a source: the form and tus uploads streamed into gpg, then recorded."""
