from circus.commands.base import Command


class Listen(Command):
    """Subscribe to the events of circusd

    circusd publishes every state change on its PUB socket (pubsub_endpoint
    in the [circus] section). Topics:

    - watcher.<name>.spawn: a process was spawned (process_pid, process_id)
    - watcher.<name>.reap: a process exited (process_pid, exit_code,
      negative for a signal)
    - watcher.<name>.kill: a process is being stopped (process_pid)
    - watcher.<name>.start, .stop, .reload: the watcher started, stopped,
      reloaded
    - watcher.<name>.updated: its options were changed
    - watcher.<name>.add, .remove: the watcher was added or removed
    - watcher.<name>.max_retry: it gave up restarting a failing program
    - arbiter.start, arbiter.stop, arbiter.reload_config

    Every message is a JSON mapping with at least "time". A subscription is
    a topic prefix: "watcher.web." gets every event of the watcher web.

    ZMQ
    ---

    Connect a SUB socket to the pubsub endpoint. Sent to the command
    endpoint, {"command": "listen"} only answers with that endpoint::

        {"status": "ok", "pubsub_endpoint": "tcp://127.0.0.1:5556", ...}

    Command line
    ------------

    ::

        $ circusctl listen [<pubsub endpoint>] [<topic> ...] [--count N]
        watcher.refuge.spawn: {"process_id": 6, "process_pid": 72976, "time": 1331681080.98}

    Without an endpoint, circusctl asks circusd for it; without a topic,
    every event is shown. --count N exits after N events.
    """

    name = "listen"
    usage = "[<endpoint>] [<topic> ...]"
    options = [("count", None, "exit after this many events")]
    # circusctl subscribes itself instead of sending a request
    client_side = True

    def message(self, *args, **opts):
        return self.make_message()

    async def execute(self, arbiter, props):
        return {"pubsub_endpoint": arbiter.pubsub_endpoint}

    def console_msg(self, msg):
        if "pubsub_endpoint" in msg:
            return str(msg["pubsub_endpoint"])
        return super().console_msg(msg)


command = Listen()
