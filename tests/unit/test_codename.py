"""Codenames: 7 EFF words from a CSPRNG, stored only as a salted Argon2id lookup id."""

from __future__ import annotations

import math
import re
import threading
import time

from crypto.codename import (
    PRODUCTION_KDF,
    Codename,
    generate_codename,
    lookup_id,
    new_salt,
    wordlist,
)


def test_codename_is_seven_distinct_draws_from_the_eff_list() -> None:
    words = set(wordlist())
    assert len(words) == 7776
    codenames = [generate_codename().reveal() for _ in range(50)]
    assert len(set(codenames)) == 50
    for codename in codenames:
        assert len(codename.split()) == 7
        assert set(codename.split()) <= words
    assert 7 * math.log2(len(words)) > 90


def test_codename_repr_hides_it() -> None:
    codename = generate_codename()
    assert codename.reveal() not in repr(codename)
    assert codename.reveal() not in str(codename)
    assert codename.reveal() not in f"{codename}"


def test_lookup_id_ignores_case_and_spacing_and_depends_on_salt() -> None:
    salt = new_salt()
    cheap = PRODUCTION_KDF.__class__(memory_cost=8, iterations=1, lanes=1)
    a = lookup_id(Codename("Alpha  beta\tgamma"), salt, cheap)
    assert a == lookup_id(Codename("alpha beta gamma"), salt, cheap)
    assert a != lookup_id(Codename("alpha beta gamma"), new_salt(), cheap)
    assert re.fullmatch(r"[0-9a-f]{64}", a)


def test_production_cost_derivations_started_together_all_finish() -> None:
    """At production cost (four lanes), two derivations started at once in one process used
    to wait on each other for ever inside OpenSSL's thread pool; crypto/kdf.py runs them one
    at a time. Three threads start together here and must all finish."""
    done: list[str] = []

    def derive() -> None:
        done.append(lookup_id(generate_codename(), new_salt(), PRODUCTION_KDF))

    threads = [threading.Thread(target=derive, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert len(done) == 3
    assert len(set(done)) == 3
