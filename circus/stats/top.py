"""circus-top: a live view of circusd-stats' stream in the terminal.

    circus-top [--endpoint tcp://127.0.0.1:5557]

Per watcher: its processes (PID, CPU %, MEMORY %, RSS, AGE), the busiest
first, and a line with the CPU average and the memory sums; circusd and
circusd-stats themselves under "circus"; the circus sockets with their
connections. Repainted every second and at once when the terminal is
resized. Keys: q quits (so does Ctrl-C), c / m / p sort by CPU, memory or
pid, the arrows, PgUp/PgDn, Home/End scroll.

Drawn with curses from the standard library; one asyncio loop reads the
stream, the keyboard and SIGWINCH, no threads. Read-only: to act, use
circusctl.
"""
import argparse
import asyncio
import curses
import os
import signal
import sys
import time

from circus.stats.client import CONNECTED, UNREACHABLE, AsyncStatsClient, StatsSnapshot
from circus.util import DEFAULT_STATS, wait_event

SORTS = {"c": "cpu", "m": "mem", "p": "pid"}
SILENT_AFTER = 3.0


def _number(value, fmt="%.1f"):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt % value
    return "N/A" if value in (None, "N/A") else str(value)


def _size(value):
    if not isinstance(value, (int, float)):
        return "N/A"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            return "%.1f%s" % (value / scale, unit)
    return "%dB" % value


def _age(value):
    if not isinstance(value, (int, float)):
        return "N/A"
    seconds = int(value)
    if seconds < 3600:
        return "%d:%02d" % divmod(seconds, 60)
    hours, rest = divmod(seconds, 3600)
    if hours < 48:
        return "%d:%02d:%02d" % (hours, rest // 60, rest % 60)
    return "%dd%02dh" % divmod(hours, 24)


def _sort_key(sort):
    def key(stat):
        value = stat.get(sort)
        numeric = isinstance(value, (int, float))
        return (numeric, value if numeric else 0)
    return key


class Layout:
    """Turns a snapshot into lines of text; knows nothing of curses."""

    def __init__(self, width, sort="cpu", max_processes=10):
        self.width = max(width, 20)
        self.sort = sort
        self.max_processes = max_processes
        wide = self.width >= 80
        # (title, width) of each process column
        self.columns = [("PID", 24), ("CPU (%)", 14), ("MEMORY (%)", 16)]
        if wide:
            self.columns += [("RSS", 14), ("AGE", 10)]

    def _row(self, cells, indent=2):
        text = " " * indent
        for (_, width), cell in zip(self.columns, cells):
            text += str(cell).ljust(width)
        return text.rstrip()

    def processes(self, title, stats, total, named=False):
        lines = [(title, "title")]
        lines.append((self._row([t for t, _ in self.columns]), "heading"))
        if not stats:
            lines.append(("  (no processes)", None))
        reverse = self.sort != "pid"
        stats = sorted(stats, key=_sort_key(self.sort), reverse=reverse)
        shown = stats if not self.max_processes else stats[:self.max_processes]
        for stat in shown:
            pid = str(stat.get("pid", "?"))
            if named and stat.get("name"):
                pid = "%s (%s)" % (pid, stat["name"])
            cells = [pid, _number(stat.get("cpu")), _number(stat.get("mem"), "%.2f"),
                     _size(stat.get("rss")), _age(stat.get("age"))]
            lines.append((self._row(cells), None))
        if len(shown) < len(stats):
            lines.append(("  ... and %d more" % (len(stats) - len(shown)), "dim"))
        if total and stats:
            lines.append((self._row(["", _number(total.get("cpu"), "%.2f") + " (avg)",
                                     _number(total.get("mem"), "%.2f") + " (sum)",
                                     _size(total.get("rss")) + " (sum)",
                                     _age(total.get("age")) + " (max)"]), "total"))
        lines.append(("", None))
        return lines

    def sockets(self, stats, total):
        columns = [("NAME", 16), ("ADDRESS", 24), ("CONNS", 8), ("NEW/s", 8), ("QUEUED", 8),
                   ("BACKLOG", 9), ("DROPS", 7)]
        if self.width < 80:
            columns = columns[:4]

        def row(cells):
            return ("  " + "".join(str(c).ljust(w) for (_, w), c in zip(columns, cells))).rstrip()

        lines = [("sockets", "title"), (row([t for t, _ in columns]), "heading")]
        for stat in sorted(stats, key=lambda s: (-(s.get("connections") or 0),
                                                  str(s.get("name")))):
            queued = stat.get("queued")
            if queued is None and stat.get("queued_bytes") is not None:
                queued = "%sB" % stat["queued_bytes"]
            lines.append((row(["%s (fd %s)" % (stat.get("name"), stat.get("fd")),
                               stat.get("address", ""), _number(stat.get("connections"), "%d"),
                               _number(stat.get("new")), _number(queued, "%d"),
                               _number(stat.get("backlog"), "%d"),
                               _number(stat.get("drops"), "%d")]), None))
        if total and len(stats) > 1:
            lines.append((row(["", "", _number(total.get("connections"), "%d"),
                               _number(total.get("new")), _number(total.get("queued"), "%d"),
                               "", _number(total.get("drops"), "%d")]) + "  (sum)", "total"))
        lines.append(("", None))
        return lines

    def render(self, snapshot):
        lines = []
        circus = snapshot.processes("circus")
        in_circus = {s.get("pid") for s in circus}
        if circus:
            lines += self.processes("circus", circus, snapshot.totals("circus"), named=True)
        for name in snapshot.watchers():
            stats = snapshot.processes(name)
            total = snapshot.totals(name)
            # circusd-stats (and the web console) are shown under "circus"
            if stats and all(s.get("pid") in in_circus for s in stats):
                continue
            count = len(stats)
            title = "%s (%d process%s)" % (name, count, "" if count == 1 else "es")
            lines += self.processes(title, stats, total)
        sockets = snapshot.sockets()
        if sockets:
            lines += self.sockets(sockets, snapshot.sockets_total())
        return lines


class Top:
    def __init__(self, endpoint=DEFAULT_STATS, ssh_server=None, ssh_keyfile=None,
                 process_timeout=3.0, max_processes=10, refresh=1.0):
        self.endpoint = endpoint
        self.ssh_server = ssh_server
        self.ssh_keyfile = ssh_keyfile
        self.snapshot = StatsSnapshot(expiry=process_timeout)
        self.max_processes = max_processes
        self.refresh = refresh
        self.sort = "cpu"
        self.offset = 0
        self.client = None
        self.screen = None
        self._quit = False
        self._resized = False
        self._wake = None
        self._started = time.monotonic()
        self._body_height = 1

    # --- input --------------------------------------------------------------
    def quit(self):
        self._quit = True
        self._wake.set()

    def _on_resize(self):
        self._resized = True
        self._wake.set()

    def _on_input(self):
        while True:
            try:
                key = self.screen.getch()
            except curses.error:
                return
            if key == -1:
                return
            self.on_key(key)

    def on_key(self, key):
        page = max(1, self._body_height - 1)
        if key in (ord("q"), ord("Q"), 3):
            self.quit()
            return
        if key == curses.KEY_RESIZE:
            self._resized = True
        elif 0 <= key < 256 and chr(key).lower() in SORTS:
            self.sort = SORTS[chr(key).lower()]
        elif key in (curses.KEY_DOWN, ord("j")):
            self.offset += 1
        elif key in (curses.KEY_UP, ord("k")):
            self.offset -= 1
        elif key in (curses.KEY_NPAGE, ord(" ")):
            self.offset += page
        elif key == curses.KEY_PPAGE:
            self.offset -= page
        elif key == curses.KEY_HOME:
            self.offset = 0
        elif key == curses.KEY_END:
            self.offset = 1 << 30
        self._wake.set()

    async def _receive(self):
        first = True
        async for watcher, subtopic, stat in self.client:
            self.snapshot.update(watcher, subtopic, stat)
            if first:
                first = False
                self._wake.set()

    # --- drawing ------------------------------------------------------------
    def status(self, now=None):
        """What to say about the connection, or None when all is well."""
        now = time.monotonic() if now is None else now
        state = self.client.state
        if state == UNREACHABLE:
            return ("Cannot reach circusd-stats at %s: the connection failed, retrying. "
                    "Is circusd running with stats_endpoint = %s?" % (self.endpoint,
                                                                       self.endpoint))
        silence = self.client.silence(now)
        if state == CONNECTED:
            if self.client.last_message is None:
                if silence > SILENT_AFTER:
                    return ("Connected to %s, but no statistics after %ds: is it "
                            "circusd-stats?" % (self.endpoint, silence))
                return "Connected to %s, waiting for statistics..." % self.endpoint
            if silence > SILENT_AFTER:
                return "No statistics from %s for %ds." % (self.endpoint, silence)
            return None
        return "Connecting to circusd-stats at %s..." % self.endpoint

    def _attr(self, name):
        attrs = {"title": curses.A_BOLD, "heading": curses.A_UNDERLINE,
                 "total": curses.A_BOLD, "dim": curses.A_DIM, "header": curses.A_REVERSE,
                 "error": curses.A_BOLD}
        attr = attrs.get(name, curses.A_NORMAL)
        if name == "error" and curses.has_colors():
            attr |= curses.color_pair(1)
        return attr

    def _put(self, y, text, attr=None):
        height, width = self.screen.getmaxyx()
        if 0 <= y < height and width > 1:
            try:
                self.screen.addnstr(y, 0, text, width - 1, self._attr(attr))
            except curses.error:
                pass

    def paint(self):
        if self._resized:
            self._resized = False
            try:
                size = os.get_terminal_size(sys.__stdout__.fileno())
                curses.resizeterm(size.lines, size.columns)
            except (OSError, curses.error):
                pass
            self.screen.clear()
        height, width = self.screen.getmaxyx()
        self.snapshot.prune()
        self.screen.erase()
        header = "Circus Top - %s - %s - sort: %s - q quits, c/m/p sort" % (
            self.endpoint, time.strftime("%H:%M:%S"), self.sort)
        self._put(0, header.ljust(width), "header")
        top = 1
        message = self.status()
        if message:
            for chunk in _wrap(message, max(10, width - 1)):
                self._put(top, chunk, "error")
                top += 1
        self._put(top, "-" * (width - 1))
        top += 1
        lines = Layout(width, self.sort, self.max_processes).render(self.snapshot)
        if not lines and not message:
            lines = [("Waiting for statistics...", None)]
        self._body_height = max(1, height - top)
        self.offset = max(0, min(self.offset, len(lines) - self._body_height))
        for index, (text, attr) in enumerate(lines[self.offset:self.offset + self._body_height]):
            self._put(top + index, text, attr)
        self.screen.noutrefresh()
        curses.doupdate()

    # --- running ------------------------------------------------------------
    async def run(self):
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # our own SIGWINCH handler, installed before curses starts, so that a
        # resize wakes the loop at once
        loop.add_signal_handler(signal.SIGWINCH, self._on_resize)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.quit)
        self.client = AsyncStatsClient(self.endpoint, ssh_server=self.ssh_server,
                                       ssh_keyfile=self.ssh_keyfile)
        receiver = None
        self.screen = curses.initscr()
        try:
            curses.noecho()
            curses.cbreak()
            self.screen.keypad(True)
            self.screen.nodelay(True)
            try:
                curses.curs_set(0)
            except curses.error:
                pass
            if curses.has_colors():
                curses.start_color()
                try:
                    curses.use_default_colors()
                    curses.init_pair(1, curses.COLOR_RED, -1)
                except curses.error:
                    curses.init_pair(1, curses.COLOR_RED, curses.COLOR_BLACK)
            loop.add_reader(sys.stdin.fileno(), self._on_input)
            receiver = asyncio.ensure_future(self._receive())
            while not self._quit:
                self.paint()
                self._wake.clear()
                # repaint on the second, or at once for a key or a resize
                delay = self.refresh - (time.time() % self.refresh)
                await wait_event(self._wake, delay)
                if receiver.done() and not receiver.cancelled() and receiver.exception():
                    raise receiver.exception()
        finally:
            loop.remove_reader(sys.stdin.fileno())
            if receiver is not None:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
            self.client.close()
            self.screen.keypad(False)
            curses.nocbreak()
            curses.echo()
            curses.endwin()
            for signum in (signal.SIGWINCH, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)


def _wrap(text, width):
    words, lines, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = (line + " " + word) if line else word
    if line:
        lines.append(line)
    return lines


def build_parser():
    parser = argparse.ArgumentParser(prog="circus-top",
                                     description="A live view of circusd-stats' statistics.")
    parser.add_argument("--endpoint", default=DEFAULT_STATS,
                        help="circusd-stats' endpoint, circusd's stats_endpoint "
                             "(default: %(default)s)")
    parser.add_argument("--ssh", default=None, help="reach the endpoint through this SSH server")
    parser.add_argument("--ssh-keyfile", default=None, help="the SSH key to use")
    parser.add_argument("--process-timeout", type=float, default=3.0,
                        help="forget a process not updated for this many seconds "
                             "(default: %(default)s)")
    parser.add_argument("-n", "--max-processes", type=int, default=10,
                        help="processes shown per watcher, the busiest first; 0 shows all "
                             "(default: %(default)s)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from circus import __version__
        print(__version__)
        return 0
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("circus-top: needs a terminal (for a stream of figures, use "
              "circus.stats.client.StatsClient)", file=sys.stderr)
        return 2
    top = Top(args.endpoint, ssh_server=args.ssh, ssh_keyfile=args.ssh_keyfile,
              process_timeout=args.process_timeout, max_processes=args.max_processes)
    try:
        asyncio.run(top.run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the terminal is restored by now: say what happened
        print("circus-top: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
