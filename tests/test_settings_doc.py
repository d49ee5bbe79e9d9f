"""The README's settings table is the documentation of ``service.config.Settings``: it must list
every setting, with its real default."""

from __future__ import annotations

import json
import re

from service.config import PROJECT_ROOT, Settings

ROW = re.compile(r"^\| `ASK_([A-Z0-9_]+)` \| (.+?) \|", re.M)


def documented() -> dict[str, str]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    return {name.lower(): default.strip() for name, default in ROW.findall(text)}


def shown(value: object) -> str:
    """A default as the table writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value))}`".replace('","', '", "')
    return f"`{value}`"


def test_every_setting_is_documented_with_its_default() -> None:
    table = documented()
    assert set(table) == set(Settings.model_fields), "settings and README table differ"
    special = {"corpus": "`seeds/`", "index": "`index/`", "cache_dir": "`~/.cache/ask-service`"}  # paths
    for name, field in Settings.model_fields.items():
        value = field.default if field.default_factory is None else None
        expected = special.get(name) or shown(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
        assert table[name] == expected, f"ASK_{name.upper()}: README says {table[name]}, config says {expected}"
