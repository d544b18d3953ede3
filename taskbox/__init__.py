"""taskbox: a durable task scheduler for one small server or several."""

from taskbox.registry import task

__all__ = ["task"]
