"""Semantic search and question answering over a folder of articles, with paragraph citations.

Kept free of heavy imports: a cold ``ask`` must not pay for torch.
"""

__version__ = "0.1.0"
