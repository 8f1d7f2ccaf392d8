"""circushttpd: the web console.

A WSGI application (circus.web.app) that talks to one or more circusd over
the public protocol only: commands through circus.client, events through
circus.consumer, statistics through circus.stats.client. It never imports
a daemon module.

- settings: every option, from the command line, the environment or a
  mapping, checked in one place;
- users, sessions: who may log in, with which role; signed session cookies,
  CSRF tokens, the failed-login limit;
- hub, model, fanout: one subscription per circusd (events + stats) kept
  in a model, and fanned out to every browser through bounded queues;
- actions: what the console may ask circusd, and the role each needs;
- app, pages, api, sse: the WSGI side;
- circushttpd: the command line (waitress, a threaded server).

circusd's side of `[circus] httpd = True` is circus.system_watchers.
"""

WATCHER_NAME = "circushttpd"
