"""The source interface's languages: every message translated in every locale, catalogues
compiled from their sources, and pages that say their language and direction."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale

from desk.app import create_app
from desk.services import Services
from desk.web import i18n
from desk.web.i18n import LANGUAGES, TRANSLATIONS
from tests.harness.forms import csrf_token
from tests.harness.paths import REPO

ROOT = REPO
TRANSLATED = [language.code for language in LANGUAGES if language.code != "en"]
RTL = {"ug", "ar", "fa"}
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|\{[a-z_]+\}|%%")
HTML_TAG = re.compile(r'<html lang="([^"]+)" dir="([^"]+)">')


def source_messages() -> set[str]:
    """Every message a source can read, extracted from the code as babel.cfg says."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = set()
    for _path, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalog(code: str) -> Catalog:
    """A locale's catalogue, as committed."""
    with (TRANSLATIONS / code / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=code)


def test_the_source_interface_has_many_messages() -> None:
    messages = source_messages()
    assert len(messages) > 60
    assert "I have a codename" in messages
    assert "There is nothing here." in messages  # marked with N_ in the code


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_source_message_is_translated(code: str) -> None:
    translations = catalog(code)
    untranslated = []
    for message in sorted(source_messages()):
        entry = translations.get(message)
        if entry is None:
            entry = next((m for m in translations if isinstance(m.id, tuple)
                          and m.id[0] == message), None)
        strings = [] if entry is None else \
            list(entry.string) if isinstance(entry.string, tuple) else [entry.string]
        if entry is None or entry.fuzzy or not strings or not all(strings):
            untranslated.append(message)
    assert untranslated == []


@pytest.mark.parametrize("code", TRANSLATED)
def test_translations_keep_every_placeholder(code: str) -> None:
    broken = []
    for entry in catalog(code):
        if not entry.id:
            continue
        assert entry.string is not None, entry.id
        ids = entry.id if isinstance(entry.id, (tuple, list)) else (entry.id,)
        strings = entry.string if isinstance(entry.string, (tuple, list)) else (entry.string,)
        expected = sorted(PLACEHOLDER.findall(ids[0]))
        for string in strings:
            if sorted(PLACEHOLDER.findall(string)) != expected:
                broken.append((ids[0], string))
    assert broken == []


@pytest.mark.parametrize("code", TRANSLATED)
def test_compiled_catalogues_match_their_sources(code: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, catalog(code))
    committed = TRANSLATIONS / code / "LC_MESSAGES" / "messages.mo"
    assert committed.read_bytes() == compiled.getvalue(), "run `make translations`"


def html_tag(client: FlaskClient, path: str = "/", **headers: str) -> tuple[str, str]:
    """The lang and dir of a page's <html> element."""
    page = client.get(path, headers=headers)
    assert page.status_code == 200
    found = HTML_TAG.search(page.text)
    assert found is not None
    return found.group(1), found.group(2)


@pytest.mark.parametrize(("accept", "lang", "direction"), [
    ("ug", "ug", "rtl"), ("ug-CN,ug;q=0.9", "ug", "rtl"), ("ar-EG,ar;q=0.9", "ar", "rtl"),
    ("fa-IR", "fa", "rtl"), ("zh-CN,zh;q=0.9", "zh-Hans", "ltr"), ("ru", "ru", "ltr"),
    ("tr-TR", "tr", "ltr"), ("es-419", "es", "ltr"), ("fr-CA,fr", "fr", "ltr"),
    ("de-DE,ug;q=0.5", "ug", "rtl"), ("de-DE", "en", "ltr"), ("", "en", "ltr")])
def test_accept_language_sets_lang_and_direction(app: Flask, accept: str, lang: str,
                                                 direction: str) -> None:
    assert html_tag(app.test_client(), **{"Accept-Language": accept}) == (lang, direction)


def test_language_links_work_without_javascript_and_are_remembered(app: Flask) -> None:
    client = app.test_client()
    landing = client.get("/", headers={"Accept-Language": "en"}).text
    for language in LANGUAGES[1:]:
        assert f'href="/?l={language.code}"' in landing
    assert html_tag(client, "/?l=ug") == ("ug", "rtl")
    assert html_tag(client, "/login", **{"Accept-Language": "fr"}) == ("ug", "rtl")
    assert html_tag(client, "/login?l=ru") == ("ru", "ltr")
    assert html_tag(client, "/") == ("ru", "ltr")


def test_the_chosen_language_outlasts_getting_a_codename_and_leaving(app: Flask) -> None:
    client = app.test_client()
    landing = client.get("/?l=zh_Hans")
    codename_page = client.post("/generate", data={"csrf_token": csrf_token(landing.text)})
    assert HTML_TAG.search(codename_page.text).groups() == ("zh-Hans", "ltr")  # type: ignore[union-attr]
    submit = client.get("/submit")
    assert html_tag(client, "/submit") == ("zh-Hans", "ltr")
    left = client.post("/logout", data={"csrf_token": csrf_token(submit.text)})
    assert left.status_code == 302
    assert html_tag(client, "/") == ("zh-Hans", "ltr")
    assert client.get("/submit").status_code == 302  # logged out all the same


@pytest.mark.parametrize("code", TRANSLATED)
def test_pages_are_actually_in_the_chosen_language(app: Flask, code: str) -> None:
    english = app.test_client().get("/?l=en").text
    translated = app.test_client().get(f"/?l={code}").text
    heading = re.compile(r"<h1>([^<]+)</h1>")
    english_heading, translated_heading = heading.search(english), heading.search(translated)
    assert english_heading is not None
    assert translated_heading is not None
    assert translated_heading.group(1) != english_heading.group(1)
    if code in RTL:
        assert re.search(r"[\u0600-\u06ff]", translated_heading.group(1))


def test_error_pages_are_translated_too(app: Flask) -> None:
    english = app.test_client().get("/missing?l=en").text
    uyghur = app.test_client().get("/missing?l=ug").text
    assert "There is nothing here." in english
    assert "There is nothing here." not in uyghur
    assert HTML_TAG.search(uyghur) is not None


def test_the_journalist_interface_stays_english(journalist_app: Flask) -> None:
    client = journalist_app.test_client()
    assert html_tag(client, "/login", **{"Accept-Language": "ug"}) == ("en", "ltr")
    assert html_tag(client, "/login?l=ar") == ("en", "ltr")
    assert "languages" not in client.get("/login").text


@pytest.mark.parametrize("path", ["/%5Celsewhere.onion/x", "//elsewhere.onion/x",
                                  "/%2F%2Felsewhere.onion", "/login/../%5Celsewhere"])
def test_language_links_never_leave_the_desk(app: Flask, path: str) -> None:
    page = app.test_client().get(path, headers={"Accept-Language": "en"})
    links = re.findall(r'href="([^"]*\?l=[^"]*)"', page.text)
    assert len(links) == len(LANGUAGES) - 1
    assert all(link.startswith("/?l=") for link in links), links


# Markup a catalogue could carry (review 2, finding 15): a script, a link elsewhere, an event
# handler on a vetted tag, and a vetted tag left open.
PLANTED = ('Désolé <script>alert(1)</script> <a href="https://elsewhere.example/">ici</a> '
           '<em onclick="steal()">x</em> <strong>ouvert')
# What the vetted subset allows, in another message of the same page.
VETTED = "<strong>Retour</strong> au <em>début</em> (<kbd>Alt</kbd>+<code>Home</code>)"


def test_markup_planted_in_a_catalogue_is_text_but_vetted_tags_render(
        desk: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "translations"
    shutil.copytree(TRANSLATIONS, copy)
    folder = copy / "fr" / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    catalog["Sorry"].string = PLANTED
    catalog["Back to the start"].string = VETTED
    with (folder / "messages.mo").open("wb") as handle:
        write_mo(handle, catalog)
    monkeypatch.setattr(i18n, "TRANSLATIONS", copy)
    page = create_app(desk.config, "source", services=desk).test_client().get("/nowhere?l=fr")

    assert page.status_code == 404
    heading = re.search(r"<h1>(.*?)</h1>", page.text)
    assert heading is not None
    # Before: <h1>Désolé <script>alert(1)</script> <a href=...>ici</a> ...</h1>
    assert heading.group(1) == (
        "Désolé &lt;script&gt;alert(1)&lt;/script&gt; "
        "&lt;a href=&#34;https://elsewhere.example/&#34;&gt;ici&lt;/a&gt; "
        "&lt;em onclick=&#34;steal()&#34;&gt;x&lt;/em&gt; &lt;strong&gt;ouvert")
    assert "<script>" not in page.text
    assert "elsewhere.example/\"" not in page.text
    assert "onclick=\"" not in page.text
    assert f'<a class="button" href="/">{VETTED}</a>' in page.text


# Tor Browser's own labels as each catalogue writes them. The English label follows in brackets
# (with the Chinese one too for Uyghur, whose speakers most likely run Tor Browser in Chinese).
# A later edit that drops "Save and restart" leaves a source at the lower level while they
# believe they are safe, so each catalogue must keep it.
SAVE_AND_RESTART = {
    "ug": "ساقلاپ قايتا قوزغىتىش", "zh_Hans": "保存并重启", "ar": "حفظ وإعادة التشغيل",
    "fa": "ذخیره و راه‌اندازی مجدد", "ru": "Сохранить и перезапустить",
    "tr": "Kaydet ve yeniden başlat", "es": "Guardar y reiniciar",
    "fr": "Enregistrer et redémarrer",
}
SAFEST = {"ug": "ئەڭ بىخەتەر", "zh_Hans": "最安全", "ar": "الأكثر أمانًا", "fa": "ایمن‌ترین",
          "ru": "Высший", "tr": "En güvenli", "es": "El más seguro", "fr": "Le plus sûr"}
IN_BRACKETS = "[(\uff08]{}[)\uff09/ ]"  # ASCII or full-width brackets


def tor_browser_steps() -> tuple[list[str], list[str]]:
    """The English messages that walk a source through Tor Browser's security level: those
    with "Save and restart" (the computer), and those for a phone."""
    messages = source_messages()
    computer = sorted(m for m in messages if "Save and restart" in m)
    phone = sorted(m for m in messages if m.startswith("On a phone") or "On a phone:" in m)
    return computer, phone


def test_the_tor_browser_steps_say_save_and_restart_and_open_the_address_again() -> None:
    computer, phone = tor_browser_steps()
    assert len(computer) == 2, computer
    assert len(phone) == 2, phone
    for message in computer:
        assert "Settings…" in message
        assert "Change…" in message
        assert "Safest" in message
        assert "open this address again" in message
        assert "reload" not in message
        assert message.index("On a computer") < message.index("shield icon")


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_catalogue_keeps_the_save_and_restart_step(code: str) -> None:
    translations = catalog(code)
    computer, phone = tor_browser_steps()
    assert set(SAVE_AND_RESTART) == set(TRANSLATED)
    for message in computer:
        string = str(translations[message].string)
        assert SAVE_AND_RESTART[code] in string, message
        assert re.search(IN_BRACKETS.format("Save and restart"), string), string
        assert re.search(IN_BRACKETS.format("Safest"), string), string
        assert "Settings…" in string, string
        assert "Change…" in string, string
    for message in [*computer, *phone, "Use Tor Browser at the Safest level."]:
        string = str(translations[message].string)
        assert SAFEST[code] in string, (message, string)
        assert re.search(IN_BRACKETS.format("Safest"), string), (message, string)


def test_safety_critical_messages_carry_translator_notes() -> None:
    with (TRANSLATIONS / "messages.pot").open("rb") as handle:
        template = read_po(handle)
    computer, phone = tor_browser_steps()
    noted = [*computer, *phone, "Use Tor Browser at the Safest level.", "Arrived.", "Resume",
             "Send message", "{done} of {total}, {percent}%%", "Your codename",
             "Videos and photos often carry GPS location, and the model and serial number of "
             "the phone or camera. Drone footage can carry a full flight track."]
    for message in noted:
        notes = " ".join(template[message].auto_comments)
        assert notes, f"no translator note for {message!r}"
    for message in [*computer, *phone]:
        assert "Tor Browser's own label" in " ".join(template[message].auto_comments), message


@pytest.mark.parametrize(("code", "size", "shown"), [
    ("en", 1_234_567, "1.2 MB"), ("fr", 1_234_567, "1,2 Mo"), ("ru", 45_600_000, "45,6 МБ"),
    ("tr", 2_000_000_000, "2,0 GB"), ("es", 70_000, "70,0 kB"), ("en", 999, "999 bytes"),
    ("fr", 999, "999 octets")])
def test_sizes_use_the_pages_decimal_mark_and_units(app: Flask, code: str, size: int,
                                                     shown: str) -> None:
    with app.test_request_context(f"/?l={code}"), force_locale(code):
        assert re.sub("[\u00a0\u202f]", " ", i18n.human_size(size)) == shown


@pytest.mark.parametrize(("code", "rate", "shown"), [
    ("en", 125_000, "125 kB/s"), ("fr", 250_000, "250 ko/s"), ("ru", 500_000, "500 кБ/c")])
def test_speeds_use_the_pages_units(app: Flask, code: str, rate: int, shown: str) -> None:
    """The speeds "Send slowly" offers, as the page's language writes them."""
    with app.test_request_context(f"/?l={code}"), force_locale(code):
        assert re.sub("[\u00a0\u202f]", " ", i18n.human_rate(rate)) == shown


def test_a_size_filled_into_a_sentence_is_bidi_isolated(app: Flask) -> None:
    client = app.test_client()
    landing = client.get("/?l=ug")
    client.post("/generate", data={"csrf_token": csrf_token(landing.text)})
    hint = re.search(r'<span class="hint">([^<]*جەمئىي[^<]*)</span>', client.get("/submit").text)
    assert hint is not None
    assert re.search("\u2068[0-9.]+ [A-Z]B\u2069", hint.group(1)), hint.group(1)
