"""Moved to circus.sdnotify (both ends of sd_notify). This alias stays only
until circus/plugins imports circus.sdnotify itself; remove it then."""
from circus.sdnotify import notify

__all__ = ["notify"]
