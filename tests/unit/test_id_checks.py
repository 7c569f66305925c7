"""Id checks accept exactly their ASCII form: "$" with `match` admits a final newline, and
`\\d` admits other scripts' digits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crypto.keys import parse_fingerprint
from desk.ops.tor import ClientKey, TorSetupError

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FINGERPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"
ONION = "234567" + "a" * 50 + ".onion"
CLIENT_KEY = ClientKey.generate()
BASE32_KEY = "234567" + "A" * 46


def refused(check: Callable[[str], object], text: str, error: type[Exception]) -> bool:
    try:
        check(text)
    except error:
        return True
    return False


@pytest.mark.parametrize(("check", "good", "error"), [
    (parse_fingerprint, FINGERPRINT, ValueError),
    (ClientKey.from_base32, BASE32_KEY, TorSetupError),
    (CLIENT_KEY.client_line, ONION, TorSetupError),
])
def test_an_id_with_a_final_newline_or_other_digits_is_refused(
        check: Callable[[str], object], good: str, error: type[Exception]) -> None:
    assert not refused(check, good, error)
    assert refused(check, good + "\n", error)
    assert refused(check, good.translate(ARABIC_INDIC), error)

