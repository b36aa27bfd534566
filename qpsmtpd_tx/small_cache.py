"""A least-recently-used cache that remembers only calls with short arguments.

``functools.lru_cache`` keeps every argument of every call it remembers: the caches of DMARC's
From domain (a header field a client writes) held 80 MB after 200 From fields of 200 KB
(measured), and would hold 1.6 GB when full. The values worth remembering (a From field, a
domain, a policy or key record) are short; a long one is computed each time.

The arguments are measured only when a call is not in the cache (a hit cannot have long
ones: they are never stored), so a remembered call costs ``lru_cache``'s lookup and one
Python call: about 1,300 instructions, where measuring every call cost 2,900 (one ``str``)
to 4,700 (a tuple of one ``str``) (callgrind).
"""

import functools


class _NotKept(Exception):
    """Carries the value of a call whose arguments are too long out of ``lru_cache``, which
    keeps nothing for a call that raises."""

    def __init__(self, value):
        super().__init__()
        self.value = value


def small_cache(maxsize, most):
    """A decorator: :func:`functools.lru_cache` of ``maxsize`` entries for calls whose
    ``str`` and ``bytes`` arguments (also inside tuples) hold at most ``most`` characters
    in all; a longer call is not remembered. ``cache_info`` and ``cache_clear`` are the
    cache's (a longer call counts as a miss)."""
    def decorate(function):
        def measured(*args):
            if _size(args) > most:
                raise _NotKept(function(*args))
            return function(*args)
        cached = functools.lru_cache(maxsize=maxsize)(measured)

        @functools.wraps(function)
        def call(*args):
            try:
                return cached(*args)
            except _NotKept as long_call:
                return long_call.value
        call.cache_info = cached.cache_info
        call.cache_clear = cached.cache_clear
        return call
    return decorate


def _size(args):
    """Characters in the ``str`` and ``bytes`` of ``args``, tuples included."""
    size = 0
    for arg in args:
        if isinstance(arg, (str, bytes)):
            size += len(arg)
        elif isinstance(arg, tuple):
            size += _size(arg)
    return size
