"""Acknowledge a tracking server's replies at once, so none waits ~40 ms on a delayed ACK; opt-in, scoped.

A plain ``mlflow server`` runs uvicorn with 4 worker processes. uvicorn binds that listening socket
itself with ``proto`` 0, and asyncio turns Nagle's algorithm off (``TCP_NODELAY``) only on sockets
that say ``IPPROTO_TCP``, so the workers' connections keep Nagle on (uvicorn issue #3149; ``--workers
1`` is not affected). A reply is written in two pieces, headers then body: Nagle holds the body until
the client acknowledges the headers, and on a kept-alive connection Linux delays that ACK by up to
40 ms. Every REST call after a connection's first costs ~44 ms, not ~2 ms (measured on /health).

The client cannot turn the server's Nagle off, but it can acknowledge at once: ``TCP_QUICKACK``, set
after the request is sent, makes the kernel ACK the headers as soon as they are read. The option is
not permanent (Linux goes back to delayed ACKs on its own), so it is set again for every reply.

:func:`quick_acks` is a context manager: inside it, the HTTP sessions MLflow makes or has made for its REST
calls and artifact transfers use a connection class that does this; on leaving, MLflow's session factory
and every session touched are as they were. The command line runs each entry point's work inside it
(``IMAGE_LINEAGE_QUICK_ACK=off`` leaves MLflow alone); the Python API never enters it on its own. Where the
option does not exist (not Linux), or MLflow has no such factory, nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
from typing import Iterator

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from image_lineage.tracking import _compat

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


def set_pool_classes(session, classes: dict | None, touched: dict) -> None:
    """Give every adapter of ``session`` the pool classes ``classes`` (None: back to what ``touched``
    recorded); pools made before keep their class, so they are dropped."""
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is None:
            continue
        if classes is None:
            manager.pool_classes_by_scheme = touched.pop(id(manager), manager.pool_classes_by_scheme)
        elif manager.pool_classes_by_scheme is not classes:
            touched.setdefault(id(manager), manager.pool_classes_by_scheme)
            manager.pool_classes_by_scheme = classes
        manager.clear()


@contextlib.contextmanager
def quick_acks() -> Iterator[bool]:
    """Inside the block, MLflow's HTTP sessions acknowledge replies at once; yields whether they do."""
    module = _compat.request_session_module() if TCP_QUICKACK is not None else None
    if module is None:
        LOGGER.debug("no TCP_QUICKACK or no MLflow session factory: replies are acknowledged as the kernel decides")
        yield False
        return
    factory = getattr(module, _compat.SESSION_FACTORY)
    sessions, touched = [], {}

    @functools.wraps(factory)
    def sessions_with_quick_acks(*args, **kwargs):
        session = factory(*args, **kwargs)  # cached by MLflow: the same object for the same settings
        if all(session is not seen for seen in sessions):
            sessions.append(session)
            set_pool_classes(session, POOL_CLASSES, touched)
        return session

    setattr(module, _compat.SESSION_FACTORY, sessions_with_quick_acks)
    try:
        yield True
    finally:
        setattr(module, _compat.SESSION_FACTORY, factory)
        for session in sessions:
            set_pool_classes(session, None, touched)
