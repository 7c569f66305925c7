"""The one way the console shows what a source or a bundle wrote.

Messages, file names, designations, desk names, usernames and tag values are the source's
words, not the console's: a terminal obeys escape sequences in them (clear the screen, set the
window title, print a fake "verified" line) and Rich obeys markup in them (`[/]` crashes a
table, `[link=...]` and `[green]` restyle it). So every such value goes through `inert`, which
makes C0 and C1 controls, DEL, ESC, lone surrogates and the Unicode format characters (the
bidi overrides that can reorder a line, zero-width characters) visible as backslash escapes,
and reaches Rich only as a `Text` (never parsed as markup).
"""

from __future__ import annotations

import json
import re

from rich.text import Text

# Bidi embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069): they reorder
# what follows them on the line, so a name can show as something it is not.
BIDI = "\u202a-\u202e\u2066-\u2069"


# Every Unicode format character (category Cf, Unicode 14): the soft hyphen, Arabic number
# signs and letter mark (U+061C), zero-width spaces and joiners and the left-to-right and
# right-to-left marks (U+200B-U+200F), the bidi controls, invisible operators (U+2060-U+2064),
# deprecated format controls, the byte order mark, interlinear annotations, and the tags
# (U+E0000-). They show as nothing, or reorder or join what is around them: two names that
# look the same can differ, and one can hide its real extension. tests/e2e/test_console_names.py
# checks this list against the running Python's Unicode database.
FORMAT = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
          "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
          "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
          "\U000e0020-\U000e007f")
FORMAT_RE = re.compile(f"[{FORMAT}]")
# C0 controls, DEL, C1 controls, lone surrogates (which cannot even be encoded for output),
# the line and paragraph separators, and the format characters (the bidi controls among
# them). Tab and newline are decided by the caller: a message keeps its lines, a name does
# not.
_ALWAYS = "\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029" + FORMAT
_ONE_LINE = re.compile(f"[\t\n{_ALWAYS}]")
_MULTI_LINE = re.compile(f"[{_ALWAYS}]")
# What JSON leaves raw with ensure_ascii=False (it escapes only C0 controls itself).
_JSON_RAW = re.compile(f"[\x7f-\x9f\ud800-\udfff\u2028\u2029{FORMAT}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


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
    return _JSON_RAW.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes a character beyond the BMP as its UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def html_value(value: object) -> object:
    """Jinja's `finalize` for the viewer and the report: every string a template prints is
    made inert (its lines kept) before autoescaping; markup the template itself built
    (anything with `__html__`) and non-strings pass as they are."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return inert(value, lines=True)
    return value
