"""Make a live local snapshot look as an older format wrote it, for the tests that check older
indexes still open (and are upgraded by the next ``index`` run)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from service.store.local import file_record


def as_older_format(folder: Path, version: int, drop_column: str, **chunking: Any) -> None:
    """Drop ``documents.<drop_column>`` (a column that format added), record ``version``, update the
    manifest's chunking record with ``chunking`` (merged one level deep), and redo the checksums of
    the rewritten metadata so the snapshot still verifies."""
    meta = folder / "meta.sqlite"
    con = sqlite3.connect(meta)
    con.execute(f"ALTER TABLE documents DROP COLUMN {drop_column}")
    con.commit()
    con.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = version
    for key, value in chunking.items():
        current = manifest["chunking"].get(key)
        manifest["chunking"][key] = {**current, **value} if isinstance(current, dict) else value
    manifest["files"]["meta.sqlite"] = file_record(meta)
    (folder / "manifest.json").write_text(json.dumps(manifest))
