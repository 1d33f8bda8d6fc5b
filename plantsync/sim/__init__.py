"""Simulated counterparts for the demo, the tests and the benches: a plant (OPC UA) and an
ISA-95 Job Control server. Not drivers: the agent never imports them."""
