"""How many distinct malformed requests the bad-input tests send (run after the others of this
folder: see conftest.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.assurance.bad_input.cases import MIN_REQUESTS, PLANNED
from tests.harness.refusals import SENT

HERE = Path(__file__).parent


def test_summary_at_least_200_distinct_malformed_requests(
        request: pytest.FixtureRequest) -> None:
    """The tables and hypothesis budgets plan at least 200 malformed requests; after a run of
    the whole folder, at least 200 distinct ones were sent (by category with -s or -rA)."""
    planned = sum(PLANNED.values())
    by_category = Counter(SENT.values())
    print(f"\nplanned {planned}: {PLANNED}")
    print(f"{len(SENT)} distinct malformed requests sent:")
    for category, count in sorted(by_category.items()):
        print(f"  {count:4d}  {category}")
    assert planned >= MIN_REQUESTS
    options = request.config.option
    partial = (options.keyword or options.markexpr or options.deselect
               or getattr(options, "lf", False)
               or any("::" in str(arg) for arg in request.config.args)
               or not set(HERE.glob("test_*.py")) <= {item.path for item in request.session.items})
    if not partial:
        assert len(SENT) >= MIN_REQUESTS, by_category
