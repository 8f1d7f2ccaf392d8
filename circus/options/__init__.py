"""One schema for the options of circus: [circus], watchers, sockets, plugins.

- schema: the typed specs (name, converter, default, doc, compatibility-only,
  the section they apply to), Where and Section (values that remember where
  they were written);
- converters: one function per kind of value, one boolean vocabulary;
- sections: whole sections checked, however they came in (a file,
  get_arbiter, the add and set commands), and the diff a reload applies;
- loader: the ini files with their includes and [env:NAME] sections;
- facts: the names the schema checks against (hooks, rlimits, socket
  families and types).

A leaf of the daemon: it imports circus.errors and circus.util, never the
watcher, arbiter, process or sockets modules it configures.
"""
from circus.errors import ConfigError
from circus.options.converters import boolean
from circus.options.loader import load
from circus.options.schema import (CIRCUS, CIRCUS_SCHEMA, PLUGIN, PLUGIN_SCHEMA, SCHEMAS,
                                   SOCKET, SOCKET_SCHEMA, WATCHER, WATCHER_SCHEMA, Family,
                                   Option, Schema, Section, Where)
from circus.options.sections import (arbiter_kwargs, arbiter_options, check_variables,
                                     convert_section, diff, flatten, option_error, warn_compat,
                                     watcher_kwargs, watcher_section)

__all__ = ["CIRCUS", "CIRCUS_SCHEMA", "ConfigError", "Family", "Option", "PLUGIN",
           "PLUGIN_SCHEMA", "SCHEMAS", "SOCKET", "SOCKET_SCHEMA", "Schema", "Section",
           "WATCHER", "WATCHER_SCHEMA", "Where", "arbiter_kwargs", "arbiter_options",
           "boolean", "check_variables", "convert_section", "diff", "flatten", "load",
           "option_error", "warn_compat", "watcher_kwargs", "watcher_section"]
