"""The layering of docs/architecture.md, checked on the source.

Every import in circus/ (at the top of a module or inside a function,
relative ones resolved) is read with ast; a process's code must not reach
a module of another process's layer, directly or through what it imports.
A plain read of the code, so it costs milliseconds and needs no imports.
"""
import ast
import os

from support import ROOT

PACKAGE = os.path.join(ROOT, "circus")

# what runs only in circusd
DAEMON = ("circus.arbiter", "circus.reload", "circus.watcher", "circus.process",
          "circus.controller", "circus.reaper", "circus.sockets", "circus.system_watchers",
          "circus.circusd", "circus.stream", "circus.counters", "circus.guardian",
          "circus.running", "circus.spawner", "circus.fdtable", "circus.heap")
# the code of processes that speak to circusd over the protocol only
OUTSIDE = {
    "client": ("circus.client", "circus.consumer", "circus.circusctl", "circus.transport"),
    "plugin": ("circus.plugins",),
    "stats": ("circus.stats",),
    "metrics": ("circus.metrics",),
    "worker": ("circus.worker",),
    "web": ("circus.web",),
}
# leaves: shared by every process, importing nothing of circus but other leaves
LEAVES = ("circus.errors", "circus.util", "circus.states", "circus.logs", "circus.sdnotify",
          "circus.pidfd", "circus.security", "circus.tasks")


def module_files():
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                if dotted.endswith(".__init__"):
                    dotted = dotted[:-len(".__init__")]
                yield dotted, path


def imports_of(dotted, path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            # `from circus import watcher` names a module too
            found.update("%s.%s" % (base, alias.name) for alias in node.names)
    return {name for name in found if name == "circus" or name.startswith("circus.")}


GRAPH = {dotted: imports_of(dotted, path) for dotted, path in module_files()}


def within(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def reachable(start):
    """Every circus module start imports, transitively, with the chain to it."""
    seen = {start: [start]}
    todo = [start]
    while todo:
        current = todo.pop()
        for target in GRAPH.get(current, ()):
            if target not in GRAPH or target in seen or target == "circus":
                # a name imported from a package, not a module; or the
                # package itself, whose get_arbiter and lazy names are the
                # library's way into the daemon (every import passes it)
                continue
            seen[target] = seen[current] + [target]
            todo.append(target)
    return seen


def test_the_graph_is_read():
    assert "circus.watcher.spawning" in GRAPH["circus.watcher"]
    assert "circus.errors" in GRAPH["circus.client"]
    assert within("circus.watcher.hooks", DAEMON) and not within("circus.worker", DAEMON)


def test_outside_processes_never_import_the_daemon():
    broken = []
    for layer, prefixes in OUTSIDE.items():
        for module in sorted(m for m in GRAPH if within(m, prefixes)):
            for target, chain in reachable(module).items():
                if within(target, DAEMON):
                    broken.append("%s (%s): %s" % (layer, module, " -> ".join(chain)))
    assert broken == []


def test_leaves_import_only_leaves():
    broken = ["%s -> %s" % (leaf, target) for leaf in LEAVES for target in GRAPH[leaf]
              if target in GRAPH and not within(target, LEAVES) and target != "circus"]
    assert broken == []


def test_process_knows_nothing_of_the_watcher_and_the_watcher_nothing_of_the_controller():
    assert not [t for t in reachable("circus.process") if within(t, ("circus.watcher",))]
    for module in (m for m in GRAPH if within(m, ("circus.watcher",))):
        assert not [t for t in reachable(module)
                    if within(t, ("circus.controller", "circus.commands"))], module
