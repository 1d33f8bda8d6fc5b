"""The local API's routes, one module per area; ``plantsync.web.api.create_app`` mounts them.

health.py       /healthz /readyz (probes), /api/v1/status
schedule.py     the last-known-good schedule, orders, approvals
plant.py        confirmations and order status from the MES
deadletters.py  bad input from the hub: list, retry, discard
common.py       what every area shares: the running parts, documented refusals, row ids
"""
