"""Languages of the source interface (Flask-Babel); the journalist interface is in English.

A source picks a language with plain links (`?l=ug`), which works without JavaScript; the
choice is kept in the server-side session. Until they pick one, the browser's Accept-Language
decides. Catalogues live in desk/translations/<locale>/LC_MESSAGES/messages.po, compiled to
messages.mo beside them (`make translations`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from babel.units import format_compound_unit, format_unit
from flask import Flask, request, session, url_for
from flask_babel import Babel, get_locale, get_translations, ngettext
from markupsafe import Markup, escape

TRANSLATIONS = Path(__file__).parent.parent / "translations"
DEFAULT = "en"


@dataclass(frozen=True)
class Language:
    """A language the source interface is offered in."""

    code: str  # Babel's locale name, as in desk/translations/
    name: str  # in the language itself
    rtl: bool = False

    @property
    def tag(self) -> str:
        """The BCP 47 tag for `<html lang>`."""
        return self.code.replace("_", "-")


LANGUAGES = (
    Language("en", "English"),
    Language("ug", "ئۇيغۇرچە", rtl=True),
    Language("zh_Hans", "简体中文"),
    Language("ar", "العربية", rtl=True),
    Language("fa", "فارسی", rtl=True),
    Language("ru", "Русский"),
    Language("tr", "Türkçe"),
    Language("es", "Español"),
    Language("fr", "Français"),
)
BY_CODE = {language.code: language for language in LANGUAGES}
# Accept-Language tags and ?l= values that mean one of ours.
ALIASES = {"zh": "zh_Hans", "zh-cn": "zh_Hans", "zh-sg": "zh_Hans", "zh-hans": "zh_Hans",
           "zh-hans-cn": "zh_Hans", "zh_hans": "zh_Hans", "uig": "ug", "ug-cn": "ug",
           "ug-arab": "ug", "fa-ir": "fa", "fa-af": "fa", "prs": "fa"}
# The markup a translation may carry: these tags, with no attribute, each closed in order.
# Everything else in a translation is text. Catalogues come from outside contributors (the
# README invites corrections), and Jinja's gettext marks a translation as safe HTML: one
# catalogue could otherwise put a link, a form or a script on every page sources read in
# that language. Today's catalogues use no markup at all.
VETTED_TAGS = ("strong", "em", "kbd", "code")
_VETTED = re.compile(f"&lt;(/?)({'|'.join(VETTED_TAGS)})&gt;")
SESSION_KEY = "locale"
QUERY_KEY = "l"
# The units of human_size, in CLDR's names (format_unit adds "digital-").
SIZE_UNITS = ("kilobyte", "megabyte", "gigabyte")


def _known(tag: str) -> str | None:
    lowered = tag.strip().lower()
    if lowered in ALIASES:
        return ALIASES[lowered]
    for language in LANGUAGES:
        if lowered in (language.code.lower(), language.tag.lower()):
            return language.code
    primary = lowered.split("-", 1)[0].split("_", 1)[0]
    if primary in ALIASES:
        return ALIASES[primary]
    return primary if primary in BY_CODE else None


def select_source_locale() -> str:
    """?l= (remembered in the session), else the session's choice, else Accept-Language."""
    chosen = _known(request.args.get(QUERY_KEY, ""))
    if chosen is not None:
        if session.get(SESSION_KEY) != chosen:
            session[SESSION_KEY] = chosen
        return chosen
    remembered = session.get(SESSION_KEY)
    if isinstance(remembered, str) and remembered in BY_CODE:
        return remembered
    for tag, _quality in request.accept_languages:
        found = _known(tag)
        if found is not None:
            return found
    return DEFAULT


def current_language() -> Language:
    """The language of the page being rendered."""
    locale = get_locale()
    code = DEFAULT if locale is None else str(locale)
    return BY_CODE.get(code, BY_CODE[DEFAULT])


def init_babel(app: Flask, interface: str) -> None:
    """Install Flask-Babel: the source interface negotiates, the journalist one is English."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT
    selector = select_source_locale if interface == "source" else (lambda: DEFAULT)
    Babel(app, locale_selector=selector)
    # Replaces Flask-Babel's own: templates' _() and ngettext() get vetted markup.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        _template_gettext, _template_ngettext, newstyle=True)

    @app.context_processor
    def _language_context() -> dict[str, object]:
        return {"language": current_language(), "language_href": language_href,
                "languages": LANGUAGES if interface == "source" else ()}


def vetted_markup(translation: str) -> Markup:
    """A translation as HTML: escaped, then the VETTED_TAGS in it made markup again, if they
    are closed in the order opened (otherwise all of it stays text)."""
    escaped = str(escape(translation))
    open_tags: list[str] = []
    for match in _VETTED.finditer(escaped):
        closing, tag = match.groups()
        if not closing:
            open_tags.append(tag)
        elif not open_tags or open_tags.pop() != tag:
            return Markup(escaped)  # noqa: S704 - escaped just above
    if open_tags:
        return Markup(escaped)  # noqa: S704 - escaped just above
    return Markup(_VETTED.sub(r"<\1\2>", escaped))  # noqa: S704 - only the vetted tags


def _template_gettext(message: str) -> Markup:
    return vetted_markup(get_translations().ugettext(message))


def _template_ngettext(singular: str, plural: str, number: int) -> Markup:
    return vetted_markup(get_translations().ungettext(singular, plural, number))


def language_href(code: str) -> str:
    """This page in language `code`: built from the route, never from the request's path (a
    path such as /\\host would make the link leave the desk), and the landing page when this
    page has no route of its own or was a form's answer."""
    if request.method == "GET" and request.url_rule is not None and request.endpoint:
        base = url_for(request.endpoint, **(request.view_args or {}))
    else:
        base = url_for("source.index")
    return f"{base}?{QUERY_KEY}={code}"


def isolated(value: object) -> str:
    """`value` inside a first-strong isolate (U+2068 ... U+2069), for filling into a translated
    sentence: in a right-to-left one, "2.0 GB" then stays one piece, whatever surrounds it."""
    return f"\u2068{value}\u2069"


def human_size(size: int) -> str:
    """1234567 -> '1.2 MB' in English, '1,2 Mo' in French, '1,2 МБ' in Russian: decimal units
    as people read them, with the page's decimal mark and unit symbols from the locale data
    (CLDR, which the browser's Intl also uses where upload.js writes sizes)."""
    if size < 1000:
        return str(ngettext("%(num)d byte", "%(num)d bytes", size))
    value = float(size)
    for unit in SIZE_UNITS:
        value /= 1000
        if value < 1000 or unit == SIZE_UNITS[-1]:
            break
    return str(format_unit(value, f"digital-{unit}", length="short", format="#,##0.0",
                           locale=get_locale() or DEFAULT))


def human_rate(bytes_per_second: int) -> str:
    """125000 -> '125 kB/s' in English, '125 ko/s' in French, '125 kB/秒' in Chinese: a speed
    in whole kilobytes per second, written from the locale data as human_size writes sizes."""
    return str(format_compound_unit(bytes_per_second / 1000, "digital-kilobyte",
                                    denominator_unit="duration-second", length="short",
                                    format="#,##0", locale=get_locale() or DEFAULT))
