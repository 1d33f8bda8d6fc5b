"""``make chaos``: a bounded fault-injection run against a real agent process.

    SimulatedPlant (own process) ──OPC UA──▶ plantsync run (own process, SIGKILLed, restarted,
    chaos load: POST confirmations ──HTTP──▶   store on a small tmpfs, clock via libfaketime)
                                               │ MQTT                        ▲ HTTP
                                               ▼                             │
                                    chaos.proxy (half-open)            chaos.mes (500s, stalls;
                                               │                        records every apply)
                                               ▼
                                    Mosquitto (stopped, restarted, sessions lost)
                                       │                     ▲
                                       ▼                     │
                       chaos.checker (HQ consumer:     chaos.hq (HQ publisher: releases,
                        ids, seqs, per stream)          revisions, snapshots on resync)

``python -m chaos.run --minutes N --seed S`` prints the table; ``chaos.report`` explains each row.
Nothing here is imported by plantsync; the tests import ``chaos.mes`` and run ``chaos.run``.
"""
