"""The agent's side of MES polling: one supervised running object per endpoint (``runner``).

The drivers (``drivers/mespoll``) fetch and map a page; this package owns everything with a
time or a state in it: the schedule (interval, or cron on the agent's one scheduler), the rate
limit, the cursor's persistence through the store, dead letters, counters and the link's health.
"""

from plantsync.agent.polling.runner import PollEndpoint, Poller, PollRunner, PollStats, runners

__all__ = ["PollEndpoint", "PollRunner", "PollStats", "Poller", "runners"]
