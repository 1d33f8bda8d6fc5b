"""Which of the hub's URLs to try, in which order: the nodes of a broker cluster, one after
another within one connect attempt.

    hub.url = ["mqtt://node-a:1883", "mqtt://node-b:1883", "mqtt://node-c:1883"]

    connect ─▶ the URL that worked last ─▶ the next ─▶ … ─▶ every one failed: the error goes
               (the first at the start)     at once        to the supervisor, which backs off
    a link that was up drops ─▶ the next connect starts with the following URL

Each URL gets the whole connect attempt of one broker (MQTT version negotiation included), so
a node that refuses TCP costs nothing and a silent one costs ``connect_timeout``. The agent's
supervisor still owns the waiting between attempts: failover only spares it the wait while
another node is there. A node that takes over without the site's session says so in its
CONNACK (session present: no), and the agent's resync path asks HQ for a snapshot.

Moving on after a drop, rather than trying the same node again first, is for the case that
matters: the node died. A node that merely blinked costs nothing either way: nodes of a cluster
are equals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from plantsync.config.model import HubConfig
from plantsync.errors import HubUnavailable, LinkMisconfigured, PlantsyncError


class UrlOrder:
    """The order in which to try the hub's URLs; shared by the connections of one process
    (``app.mqtt_hub``), event loop only."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = tuple(urls)
        self._first = 0

    def order(self) -> tuple[str, ...]:
        """Every URL, starting with the one to try first."""
        return self._urls[self._first :] + self._urls[: self._first]

    @property
    def current(self) -> str:
        """The URL tried first next time: the one in use while a link is up."""
        return self._urls[self._first]

    def connected(self, url: str) -> None:
        """``url`` accepted us: the next connect starts there."""
        self._first = self._urls.index(url)

    async def connect(
        self, config: HubConfig, attempt: Callable[[HubConfig], Awaitable[None]]
    ) -> None:
        """Run ``attempt`` with ``config`` narrowed to each URL in turn until one succeeds;
        with a single URL its error is raised as it is."""
        urls = self.order()
        failures: list[tuple[str, PlantsyncError]] = []
        for url in urls:
            try:
                await attempt(config.model_copy(update={"url": url}))
            except PlantsyncError as exc:
                if len(urls) == 1:
                    raise
                failures.append((url, exc))
                continue
            self.connected(url)
            return
        raise none_reached(failures) from failures[-1][1]

    def dropped(self, url: str) -> None:
        """A link to ``url`` that was up has dropped: the next connect starts after it."""
        if url == self.current:
            self._first = (self._first + 1) % len(self._urls)


def none_reached(failures: Sequence[tuple[str, PlantsyncError]]) -> PlantsyncError:
    """The error of an attempt in which no URL accepted us: every reason in its message;
    LinkMisconfigured only when every node refused us for good (credentials, certificate)."""
    reasons = "; ".join(f"{url}: {error}" for url, error in failures)
    if all(isinstance(error, LinkMisconfigured) for _, error in failures):
        return LinkMisconfigured(f"no hub node accepted us: {reasons}")
    return HubUnavailable(f"no hub node reachable: {reasons}")
