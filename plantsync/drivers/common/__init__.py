"""Code two drivers share, kept once (as Telegraf keeps ``plugins/common/<proto>/``).

What belongs here: protocol plumbing that more than one driver needs, such as setting up an
OPC UA client, translating asyncua's exceptions, and watching a subscription for silence
(``opcua``, used by the OPC UA source and the ISA-95 Job Control sink). What does not: anything
one driver alone uses, and anything that knows the agent; drivers import from here, never from
each other's modules.
"""
