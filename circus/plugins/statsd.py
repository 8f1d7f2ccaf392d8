"""circus.plugins.statsd.StatsdEmitter: the same plugin as
circus.plugins._statsd.StatsdEmitter, the path the documentation gives."""
from circus.plugins._statsd import StatsdClient, StatsdEmitter, metric_name

__all__ = ["StatsdClient", "StatsdEmitter", "metric_name"]
