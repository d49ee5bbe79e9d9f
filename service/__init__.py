"""Semantic search and question answering over a folder of articles, with paragraph citations.

Kept free of heavy imports: a cold ``ask`` must not pay for torch.
"""

from .runtime import set_library_defaults

set_library_defaults()  # before numpy is imported anywhere (see service.runtime)

__version__ = "0.1.0"
