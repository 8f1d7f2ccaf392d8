"""Hooks named by dotted path in watcher tests."""


def refuse(watcher, arbiter, hook_name, **kwargs):
    return False
