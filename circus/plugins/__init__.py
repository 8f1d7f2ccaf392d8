"""Plugins: processes that listen to every circusd event and drive circusd.

A plugin subclasses CircusPlugin and implements handle_recv()::

    from circus.plugins import CircusPlugin

    class Logger(CircusPlugin):
        name = 'logger'

        def __init__(self, filename, **kwargs):
            super().__init__(**kwargs)
            self.filename = filename

        def handle_init(self):
            self.file = open(self.filename, 'a+')

        def handle_stop(self):
            self.file.close()

        def handle_recv(self, data):
            topic, msg = data
            self.file.write('%s::%s' % (topic, msg))

circusd runs it from a config section (every key but `use` reaches the
constructor; values are strings)::

    [plugin:logger]
    use = myproject.plugins.Logger
    filename = /var/myproject/circus.log

or from the library: ``get_arbiter(..., plugins=[{"use": "myproject.plugins.Logger",
"filename": "..."}])`` (an optional "name" key names the plugin; it defaults to
the class name in lower case). Each plugin runs in its own process under a
singleton watcher named ``plugin:NAME`` (list, status, stats, kill... treat it
like any watcher): started before, and stopped after, every other watcher;
respawned if it dies. Its stdout and stderr go to circusd's log.

By hand: ``circus-plugin --endpoint E --pubsub P [--check-delay N]
[--config key=value ...] myproject.plugins.Logger``.

In the plugin process there is one asyncio loop and no thread:

- ``handle_recv((topic, message))`` is called for every event, in order:
  topic is a str (``watcher.web.spawn``), message the decoded JSON mapping.
  An exception there is logged and the plugin goes on.
- ``handle_init()`` is called once the loop runs, before the first event;
  ``handle_stop()`` when the plugin stops (SIGTERM from circusd, Ctrl-C, or
  ``stop()``), after the last event.
- ``self.loop`` is that loop: schedule periodic or asynchronous work on it
  (``self.loop.call_later``, ``self.loop.create_task``).
- ``call(command, **props)`` sends a command and returns circusd's reply
  mapping. It blocks the loop for one round trip (up to ``call_timeout``
  seconds, then CallError), so it can be used straight from handle_recv.
  Coroutines running on the loop can ``await self.acall(...)`` instead, which
  lets events flow meanwhile.
- ``cast(command, **props)`` sends and does not wait.

circusd has no command to publish an arbitrary event; a plugin reports what
it does through the commands it sends (stop, start, restart... each produce
their usual events) and, for a state of its own, by setting a dotted option
of its choice on a watcher (``set`` -> a ``watcher.NAME.updated`` event, and
the value stays readable with ``get``/``options``). The built-in plugins do so
under their own prefix (``flapping.state``, ``http_observer.state``).

The package, by who runs what:

- this module and circus.plugins.sdk: the SDK plugin authors import;
- circus.plugins.runner: the circus-plugin command (``python -m circus.plugins``);
- circus.plugins.flapping, .watchdog, .statsd, .http_observer,
  .resource_watcher, .command_reloader: the built-in plugins;
- circusd's side (the plugin:NAME watchers) is circus.system_watchers.
"""
from circus.plugins.sdk import CircusPlugin

__all__ = ["CircusPlugin", "main"]


def main(argv=None):
    """The circus-plugin command (circus.plugins.runner)."""
    from circus.plugins.runner import main as run
    return run(argv)
