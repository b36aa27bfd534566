"""Writing a reply straight into the socket when nothing is queued before it.

Twisted's TCP transport never writes in ``write``: it queues the bytes, asks epoll for
writability, writes on the next reactor turn and then takes the socket out of the write set
again — two ``epoll_ctl`` calls and a reactor pass for every reply, though a reply almost
always fits into the socket's buffer at once. :func:`write_now` sends at once when the
transport has nothing queued (so the order of bytes is kept) and hands Twisted only what the
socket did not take, or the whole write when anything is unusual (a wrapper transport, a
closing connection, an error to report), so Twisted's own handling stays in charge there.

Closing is the same story: ``loseConnection`` puts the socket in the write set, and only the
next reactor pass, finding nothing to send, closes it (two more ``epoll_ctl``, an empty
``send`` and a pass for every connection). :func:`lose_now` closes on the next turn without
them when nothing is queued.
"""

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.python import log
from twisted.python.failure import Failure

#: what the protocol is told once the close completes (one Failure for all, as Twisted does)
_DONE = Failure(ConnectionDone())

#: the transports lose_now closes on the next reactor turn: one timer for all those of a turn
#: (a timer each went through the reactor's heap of timers twice)
_to_close = []


def _idle(writer):
    """True when the Twisted file descriptor ``writer`` is open with nothing queued to send."""
    return (writer.connected and not writer.disconnecting and not writer._writeDisconnected
            and not writer._tempDataLen and writer.offset == len(writer.dataBuffer))


def _idle_tcp(transport):
    """True for a plain TCP connection, open, with nothing queued to send."""
    return type(transport) is tcp.Server and _idle(transport)


def write_now(transport, data):
    """Write ``data`` to ``transport``: into the socket now if it is a plain TCP connection with
    nothing queued, else (and for what the socket does not take) through ``transport.write``."""
    if type(transport) is not tcp.Server:
        transport.write(data)
        return
    write_through(transport, data, transport, transport.socket.send)


def write_through(transport, data, writer, send):
    """Write ``data`` with ``send(data)`` (a non-blocking write returning the bytes taken) if
    ``writer``, the Twisted file descriptor under ``transport``, is open with nothing queued;
    else, and for what ``send`` did not take, through ``transport.write``."""
    if not _idle(writer):
        transport.write(data)
        return
    try:
        sent = send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        transport.write(data)     # Twisted meets the error again and closes as usual
        return
    if sent < len(data):
        transport.write(data[sent:])


def lose_now(transport):
    """Close ``transport`` as ``transport.loseConnection()`` does; when it is a plain TCP
    connection with nothing queued and no producer, without the write pass: reading stops
    now, and the socket is shut down and closed on the next reactor turn (the protocol's
    ``connectionLost`` gets ConnectionDone, as after ``loseConnection``).

    True in that case: the close then completes whatever the client does, so it needs no
    time limit; False when it waits for Twisted to send what is queued.
    """
    if not _idle_tcp(transport) or transport.producer is not None:
        transport.loseConnection()
        return False
    transport.stopReading()
    transport.stopWriting()
    transport.disconnecting = True
    if not _to_close:
        transport.reactor.callLater(0, _close_all)
    _to_close.append(transport)
    return True


def _close_all():
    batch = _to_close[:]
    del _to_close[:]
    for transport in batch:
        try:
            _close(transport)
        except Exception:
            log.err(None, "closing %r" % (transport,))    # the others are closed all the same


def _close(transport):
    # an abortConnection meanwhile closes it its own way (ConnectionAborted, a reset)
    if transport.connected and not transport._aborting:
        transport.connectionLost(_DONE)
