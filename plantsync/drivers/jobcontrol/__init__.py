"""OPC UA ISA-95 Job Control (OPC 10031-4 v2): schedule changes go to a JobOrderReceiver, job
order states and job responses come back as order status and production confirmations.

    __aenter__   connect ─▶ load the server's data type definitions (ua.ISA95JobOrderDataType…)
                 ─▶ find the receiver and the response provider (``discovery``) ─▶
                 subscribe to JobOrderList and JobOrderResponseList
    apply        the job order as the subscription last reported JobOrderList (read afresh
                 while this session's own calls are not in that report yet) ─▶ plan the calls
                 that take it from where it is to where the change wants it ─▶ call them in
                 order, the first refusal ends it
    events       JobOrderList / JobOrderResponseList changes ─▶ diff ─▶ bounded queue (drop
                 oldest) ─▶ OrderStatus, ProductionConfirmation; the link lost ─▶ raises

How a change becomes method calls, given the job order's state on the server:

    the order's request state     the job order is ...            calls
    Released                      absent                          Store, Start (or
                                                                  StoreAndStart: release_method)
    Held, Forecast                absent                          Store
    any                           stored at an older revision     Update (before Start, after
                                  (NotAllowedToStart,             RevokeStart); a content change
                                  AllowedToStart)                 to a started one: Update, which
                                                                  the server refuses
    Released (hold-release)       NotAllowedToStart / Interrupted Start / Resume
    Held (hold)                   AllowedToStart / Running        RevokeStart / Pause
    Cancelled                     not started / Running, Inter-   Cancel / Abort / Clear;
                                  rupted / Ended / absent         nothing when Aborted; Cancel
                                                                  when absent (UnknownJobOrderId)

Every receiver method is optional. One the server does not offer falls back where the spec
allows it: StoreAndStart ─▶ Store, Start; Update of a job order not started ─▶ Cancel, Store;
Start after a Store ─▶ left out (the job order waits in NotAllowedToStart for the plant to
start it). Any other missing method refuses the change, naming the method, before any call.

Idempotency: the job order carries its revision (a JobOrderParameter), and every call is planned
from the job order's state as the server last reported it: a change that already took effect
plans no calls and is applied, one that took effect halfway plans the rest. The report is the
subscription's last JobOrderList value, unless this session called for that job order and the
list has not shown the outcome yet (``plan.Outcome``): then JobOrderList is read. A refusal of a
plan made from the report, and a call refused with InvalidJobOrderStatus (the machine started
the order meanwhile), are planned once more from a fresh read.

A refusal (a ReturnStatus other than NoError) is PlantVerdict(applied=False, reason="jobcontrol:
<bits>"); a lost link or a timeout is SourceUnavailable; a refused identity or a server without
the Job Control model is LinkMisconfigured. The driver reconnects nothing.
"""

from plantsync.drivers.jobcontrol.sink import JobControlSink

__all__ = ["JobControlSink"]
