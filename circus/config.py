"""The ini configuration, as it was imported before circus.options existed.

The loader and the option schema live in circus.options; this module keeps
the historical names importable for existing callers.
"""
from circus.errors import ConfigError
from circus.options import (CIRCUS_SCHEMA, SOCKET_SCHEMA, WATCHER_SCHEMA, arbiter_kwargs,
                            check_variables, load, watcher_kwargs)

# {name: converter} of the options of each section
WATCHER_OPTIONS = {spec.name: spec.convert for spec in WATCHER_SCHEMA}
CIRCUS_OPTIONS = {spec.name: spec.convert for spec in CIRCUS_SCHEMA}
SOCKET_OPTIONS = {spec.name: spec.convert for spec in SOCKET_SCHEMA}


def convert_watcher_option(key, value):
    """Validate one watcher option; returns (key, converted value).
    Raises ValueError naming what is wrong."""
    return WATCHER_SCHEMA.convert(key, value)


__all__ = ["ConfigError", "load", "check_variables", "watcher_kwargs", "arbiter_kwargs",
           "convert_watcher_option", "WATCHER_OPTIONS", "CIRCUS_OPTIONS", "SOCKET_OPTIONS"]
