"""Acknowledge a tracking server's replies at once, so none waits ~40 ms on a delayed ACK.

A plain ``mlflow server`` runs uvicorn with 4 worker processes. uvicorn binds that listening socket
itself with ``proto`` 0, and asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on sockets
that say ``IPPROTO_TCP``, so the workers' connections keep Nagle on (uvicorn issue #3149; ``--workers
1`` is not affected). A reply is written in two pieces, headers then body: Nagle holds the body until
the client acknowledges the headers, and on a kept-alive connection Linux delays that ACK by up to
40 ms. Every REST call after a connection's first costs ~44 ms, not ~2 ms (measured on /health).

The client cannot turn the server's Nagle off, but it can acknowledge at once: ``TCP_QUICKACK``, set
after the request is sent, makes the kernel ACK the headers as soon as they are read. The option is
not permanent (Linux goes back to delayed ACKs on its own), so it is set again for every reply.

:func:`install_quick_acks` puts a connection class that does this on the HTTP session MLflow uses for
REST calls and artifact transfers, in this process only. Where the option does not exist (not Linux)
nothing changes.
"""

from __future__ import annotations

import functools
import logging
import socket

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

LOGGER = logging.getLogger(__name__)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def acknowledge_at_once(sock) -> None:
    """Ask the kernel to ACK what arrives next without waiting (best effort)."""
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        except (OSError, AttributeError, ValueError):  # a socket that is not TCP, or already closed
            pass


class QuickAck:
    """Mixed into urllib3's connections: each reply's first segment is acknowledged at once."""

    replies = 0  # how many replies were read this way (tests check that MLflow's calls go through here)

    def getresponse(self, *args, **kwargs):
        acknowledge_at_once(self.sock)
        QuickAck.replies += 1
        return super().getresponse(*args, **kwargs)


class QuickAckHTTPConnection(QuickAck, HTTPConnection):
    pass


class QuickAckHTTPSConnection(QuickAck, HTTPSConnection):
    pass


class QuickAckHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = QuickAckHTTPConnection


class QuickAckHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = QuickAckHTTPSConnection


POOL_CLASSES = {"http": QuickAckHTTPConnectionPool, "https": QuickAckHTTPSConnectionPool}


def use_quick_acks(session):
    """Give every adapter of ``session`` (a ``requests.Session``) the quick-ACK pools; returns it."""
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is not None and manager.pool_classes_by_scheme is not POOL_CLASSES:
            manager.clear()  # pools made before keep their class
            manager.pool_classes_by_scheme = POOL_CLASSES
    return session


def install_quick_acks() -> bool:
    """Make MLflow's HTTP sessions (made per retry setting and process) use quick ACKs. Idempotent;
    False where it cannot be done: no ``TCP_QUICKACK`` here, or an MLflow without that session factory."""
    if TCP_QUICKACK is None:
        return False
    from mlflow.utils import request_utils

    factory = getattr(request_utils, "_cached_get_request_session", None)
    if factory is None:
        LOGGER.debug("MLflow has no _cached_get_request_session: replies are acknowledged as the kernel decides")
        return False
    if getattr(factory, "quick_acks", False):
        return True

    @functools.wraps(factory)
    def sessions_with_quick_acks(*args, **kwargs):
        return use_quick_acks(factory(*args, **kwargs))  # the factory caches the session: cheap after once

    sessions_with_quick_acks.quick_acks = True
    request_utils._cached_get_request_session = sessions_with_quick_acks
    return True
