"""`desk-review report`: one self-contained HTML file a verifier can check independently.

It carries the file's SHA-256 and each part's, the ciphertext digest, the desk's custody
entries for the item with their hashes and signatures (and the public key that checks them),
the metadata report with what could identify the source, the keyframes, and the console's own
hash-chained log of what was done to the item.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from crypto.custody import CustodyEntry, verify_chain
from crypto.durable import write_durably
from desk.paths import TEMPLATES
from desk.review.index import Action, CustodyLine, Item, KnownDesk
from desk.review.inert import html_value
from desk.review.inspect import Report
from desk.review.workspace import Workspace, verify_actions


def render_report(workspace: Workspace, item_id: str, file_sha256: str, report: Report,
                  sheet_png: bytes | None) -> str:
    """The evidence report for an item as HTML."""
    with workspace.session() as session:
        item = workspace.item(session, item_id)
        desk = session.get(KnownDesk, item.desk_key)
        lines = session.scalars(select(CustodyLine).where(CustodyLine.desk_key == item.desk_key)
                                .order_by(CustodyLine.seq))
        chain = verify_chain([CustodyEntry.from_json(line.entry) for line in lines],
                             item.desk_key)
        verify_actions(session)
        actions = list(session.scalars(select(Action).where(Action.item_id == item.id)
                                       .order_by(Action.seq)))
        context = _context(item, desk, chain, actions, file_sha256, report, sheet_png)
    env = Environment(loader=FileSystemLoader(TEMPLATES / "review"),
                      autoescape=select_autoescape(default=True), finalize=html_value)
    return env.get_template("report.html").render(**context)


def _context(item: Item, desk: KnownDesk | None, chain: list[CustodyEntry],
             actions: list[Action], file_sha256: str, report: Report,
             sheet_png: bytes | None) -> dict[str, Any]:
    return {
        "item": item,
        "parts": list(item.parts),
        "desk_name": desk.name if desk else "unknown desk",
        "desk_key": item.desk_key,
        "file_sha256": file_sha256,
        "sha256_matches": item.sha256 is None or item.sha256 == file_sha256,
        "custody": [e for e in chain if e.subject == item.custody.subject],
        "chain_length": len(chain),
        "chain_head": chain[-1].entry_hash if chain else None,
        "report": report,
        "facts": {k: v for k, v in report.facts.items() if v not in (None, "", 0)},
        "actions": [(a, json.loads(a.detail)) for a in actions],
        "sheet": base64.b64encode(sheet_png).decode("ascii") if sheet_png else None,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_report(html: str, out: Path) -> None:
    """Write the report durably (a new file; never overwrites evidence)."""
    write_durably(out, html.encode("utf-8"), replace=False)
