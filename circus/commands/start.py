from circus.commands.base import MATCH, ArgumentError, Command, string

MATCH_OPTION = ("match", None, "how <name> designates watchers: simple (default), "
                "glob or regex", ("simple", "glob", "regex"))


class Start(Command):
    """Start the arbiter or a watcher

    ZMQ Message
    -----------

    ::

        {"command": "start", "properties": {"name": "<name>", "match": "simple"}}

    The response returns the status "ok". With a name, that watcher is
    started; without, every watcher is, by priority. "match" may be "glob"
    or "regex", making the name a pattern (on lower-case names; a regex
    matches from the start of the name); the response then lists the
    "watchers" it matched.

    Command line
    ------------

    ::

        $ circusctl start [<name>] [--match=simple|glob|regex] [--waiting]
    """

    name = "start"
    usage = "[<name>]"
    spec = {"name": string, "match": MATCH}
    options = [MATCH_OPTION]
    waits = True

    def message(self, *args, **opts):
        if len(args) > 1:
            raise ArgumentError("%s takes at most one watcher name" % self.name)
        if opts.get("match") and not args:
            raise ArgumentError("--match needs a name pattern")
        return self.make_message(name=args[0] if args else None, match=opts.get("match"))

    def accepted(self, arbiter, props):
        if props.get("match", "simple") != "simple" and "name" in props:
            return {"watchers": [w.name for w in self.matching_watchers(arbiter, props)]}
        return {}

    # start, restart: nothing is started once circusd is stopping
    starts = True

    async def execute(self, arbiter, props):
        if self.starts:
            self.refuse_while_stopping(arbiter, self.name)
        if "name" not in props:
            await self.on_arbiter(arbiter, props)
            return {}
        watchers = self.matching_watchers(arbiter, props)
        for watcher in watchers:
            await self.on_watcher(watcher, props)
        if props.get("match", "simple") != "simple":
            return {"watchers": [w.name for w in watchers]}
        return {}

    async def on_arbiter(self, arbiter, props):
        await arbiter.start_watchers()

    async def on_watcher(self, watcher, props):
        started = await watcher.start()
        if started is False and self.starts:
            # circusd began to stop while this one waited for the watcher
            self.refuse_while_stopping(watcher.arbiter, self.name)


command = Start()
