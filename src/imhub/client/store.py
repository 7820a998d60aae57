"""The optional state file: what a restarted application needs to lose nothing.

It keeps each conversation's cursor (the last sequence handed to the application), the
messages sent but not yet answered (resent, with the same ``msgIdClient``, after a restart),
and the conversations the application had entered. Written atomically (write, then rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Saved:
    cursors: dict[int, int] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    entered: list[int] = field(default_factory=list)


class StateFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> Saved:
        if not self.path.exists():
            return Saved()
        raw = json.loads(self.path.read_text())
        return Saved(
            cursors={int(k): int(v) for k, v in raw.get("cursors", {}).items()},
            outbox=list(raw.get("outbox", [])),
            entered=[int(c) for c in raw.get("entered", [])],
        )

    def save(self, saved: Saved) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = {
            "cursors": {str(k): v for k, v in saved.cursors.items()},
            "outbox": saved.outbox,
            "entered": saved.entered,
        }
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)
