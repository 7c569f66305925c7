"""The one way the console shows what a source or a bundle wrote.

Messages, file names, designations, desk names, usernames and tag values are the source's
words, not the console's: a terminal obeys escape sequences in them (clear the screen, set the
window title, print a fake "verified" line) and Rich obeys markup in them (`[/]` crashes a
table, `[link=...]` and `[green]` restyle it). So every such value goes through `inert`, which
makes C0 and C1 controls, DEL, ESC, lone surrogates and the Unicode bidi overrides that can
reorder a line visible as backslash escapes, and reaches Rich only as a `Text` (never parsed
as markup).
"""

from __future__ import annotations

import json
import re

from rich.text import Text

# Bidi embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069): they reorder
# what follows them on the line, so a name can show as something it is not.
BIDI = "\u202a-\u202e\u2066-\u2069"
# C0 controls, DEL, C1 controls, lone surrogates (which cannot even be encoded for output),
# the line and paragraph separators, and the bidi controls. Tab and newline are decided by
# the caller: a message keeps its lines, a name does not.
_ALWAYS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029" + BIDI
_ONE_LINE = re.compile(f"[\t\n{_ALWAYS}]")
_MULTI_LINE = re.compile(f"[{_ALWAYS}]")
# What JSON leaves raw with ensure_ascii=False (it escapes only C0 controls itself).
_JSON_RAW = re.compile(f"[\x7f-\x9f\ud800-\udfff\u2028\u2029{BIDI}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(value: object, *, lines: bool = False) -> str:
    """`value` as text a terminal shows and never obeys: every control character, ESC and bidi
    control written as a visible escape (`\\x1b`, `\\x9b`, `\\u202e`). With `lines`, tab and
    newline stay as they are (a message's layout); otherwise they are escaped too, so one
    value stays on one line."""
    text = value if isinstance(value, str) else str(value)
    return (_MULTI_LINE if lines else _ONE_LINE).sub(_visible, text)


def plain(value: object, *, lines: bool = False, style: str = "") -> Text:
    """`inert(value)` as a Rich Text: shown as it is, never parsed as markup or emoji."""
    return Text(inert(value, lines=lines), style=style)


def cell(value: object, missing: str = "-") -> Text:
    """A table cell: the value made inert, or `missing` for None and the empty string."""
    return plain(missing if value is None or value == "" else value)


def json_text(data: object) -> str:
    """JSON for scripts: every value exactly as it is (a JSON reader gets it back unchanged),
    with the characters JSON would leave raw (DEL, C1, bidi controls, separators) written as
    \\u escapes too, so that printing it cannot drive a terminal either."""
    text = json.dumps(data, ensure_ascii=False, indent=1, default=str)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def html_value(value: object) -> object:
    """Jinja's `finalize` for the viewer and the report: every string a template prints is
    made inert (its lines kept) before autoescaping; markup the template itself built
    (anything with `__html__`) and non-strings pass as they are."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return inert(value, lines=True)
    return value
