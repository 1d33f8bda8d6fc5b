"""The hub over MQTT: one paho-mqtt connection per session, shaped for asyncio.

    connection.py  HubConnection, the Hub: connect (CONNACK), publish, subscribe, ack, close;
                   the event loop's side of the thread diagram drawn there
    network.py     the network thread: connect, then paho's loop parts around our select()
    window.py      publishes on their way to a PUBACK: send()'s window, publish()'s futures
    inbound.py     the bounded queue behind messages()
    negotiation.py the MQTT version offered ("auto": 5, else 3.1.1), CONNECT to CONNACK
    failover.py    the hub's URLs (a cluster's nodes), tried in turn within one connect
    client.py      the paho client as the config asks for it, paho's own machinery switched off
    tls.py         the SSL context, and where paho, OS and ssl failures become plantsync errors

HubConnection is the public name, with ProtocolChoice and UrlOrder, which the connections of
one process share so that each offers first the version the broker accepted last and starts
at the URL that worked; the modules below it never import connection.py, and each can be read
on its own.
"""

from __future__ import annotations

from plantsync.drivers.mqtt.client import maximum_packet_size
from plantsync.drivers.mqtt.connection import HubConnection
from plantsync.drivers.mqtt.failover import UrlOrder
from plantsync.drivers.mqtt.negotiation import ProtocolChoice

__all__ = ["HubConnection", "ProtocolChoice", "UrlOrder", "maximum_packet_size"]
