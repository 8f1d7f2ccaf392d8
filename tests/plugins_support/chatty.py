"""A plugin that logs one line at each level, one exception, and prints one
line, when it starts: to see them arrive in circusd's log."""
import logging

from circus.plugins import CircusPlugin

log = logging.getLogger("chatty")


class Chatty(CircusPlugin):
    name = "chatty"

    def handle_init(self):
        log.debug("chatty debug line")
        log.info("chatty info line")
        log.warning("chatty warning line")
        log.error("chatty error line")
        try:
            raise ValueError("chatty boom")
        except ValueError:
            log.exception("chatty exception line")
        log.info("chatty after the exception")
        print("chatty printed line", flush=True)

    def handle_recv(self, data):
        pass
