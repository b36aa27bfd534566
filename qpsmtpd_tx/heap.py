"""Keeping Python's garbage collector off the objects that live as long as the server.

A full collection looks at every object the collector tracks: in a started server ~50,000
(Twisted, the plugins' modules and libraries, the config), which took tens of milliseconds
each time, during which no connection is served. What exists once the server has started
lives as long as the process, so :func:`freeze_started` moves it out of the collector's view
(``gc.freeze``); connections' objects are collected as before.

The youngest generation is collected after 5,000 more objects made than freed instead of
Python's 700: the objects of the sessions in progress (50 clients: thousands) pushed that
count over 700 about once every ten messages, and each such collection looked at all of them
(2 % of the CPU at one message per connection, measured); over 5,000 it went once in 5,000
messages. A connection's objects are freed by reference counting as soon as it ends
(tests/test_heap.py), so they do not wait for these collections.

A SIGHUP reload replaces the plugin chain: :func:`thaw` gives the frozen objects back to the
collector first, so that the old chain's plugins can be collected once its sessions end; when
the last of them has ended (at once if none was in progress) :func:`refreeze` collects the old
chain and freezes again (the new chain, and the objects of the sessions in progress then:
those are freed by reference counting when they end, like any connection's). Without it a
server reloaded once went back to full collections of everything for good.
"""

import gc


#: objects made and not freed that start a collection of the youngest generation
YOUNG_THRESHOLD = 5000

#: whether this process froze its start-up objects (a server; not a test's process)
_in_use = False


def freeze_started():
    """Collect what starting left as garbage, then freeze every object left; raise the
    youngest generation's threshold."""
    global _in_use
    _in_use = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def thaw():
    """Give the frozen objects back to the collector (before a reload)."""
    gc.unfreeze()


def freezing():
    """Whether this process froze its start-up objects (:func:`freeze_started`)."""
    return _in_use


def refreeze():
    """After a reload, once no session uses the old chain: collect it and freeze what is
    left. Nothing if :func:`freeze_started` was not called in this process."""
    if _in_use:
        gc.collect()
        gc.freeze()


def forget():
    """Undo :func:`freeze_started` (for tests in a process that goes on)."""
    global _in_use
    _in_use = False
    gc.unfreeze()
