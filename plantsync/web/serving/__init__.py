"""The local API's socket bound before READY, its app built after it (``deferred.py``); the
one way a socket for it is opened (``listen.py``)."""
