"""Callplane: an open-source contact center built on a pure core and a thin asyncio shell."""

__version__ = "0.1.0"
