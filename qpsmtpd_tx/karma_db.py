"""karma's records, shared by ``plugins/karma.py`` and the ``qpsmtpd-tx karma`` command.

One record per client IP, as qpsmtpd's: key ``karma:<ip as an integer>``, value
``<penalty start>:<naughty>:<nice>:<connects>`` (the penalty start is seconds since the
epoch, 0 when the client was never penalized; it may lie in the future: the penalty box
bonus). Every record has a TTL (:func:`ttl`).
"""

import attr

from qpsmtpd_tx.kvstore import ip_key, key_ip

KEY_PREFIX = "karma:"
DAY = 86400
#: days a record is kept after its last write unless a penalty lasts longer (``expire_days``)
DEFAULT_EXPIRE_DAYS = 60


@attr.s
class Record:
    """One client's history."""

    penalty_start = attr.ib(default=0)
    naughty = attr.ib(default=0)
    nice = attr.ib(default=0)
    connects = attr.ib(default=0)

    @classmethod
    def parse(cls, value):
        """The record of a stored value; empty or broken fields count as 0 (as qpsmtpd)."""
        fields = (value or "").split(":") + ["0"] * 4
        numbers = []
        for field in fields[:4]:
            try:
                numbers.append(int(float(field or 0)))
            except ValueError:
                numbers.append(0)
        return cls(*numbers)

    def format(self):
        """The stored value: ``penalty_start:naughty:nice:connects``."""
        return "%d:%d:%d:%d" % (self.penalty_start, self.naughty, self.nice, self.connects)

    @property
    def history(self):
        """nice − naughty: qpsmtpd's ``karma_history``."""
        return self.nice - self.naughty


def key(ip):
    """The store key of a client IP."""
    return KEY_PREFIX + ip_key(ip)


def ip_of(store_key):
    """The IP of a store key (see :func:`qpsmtpd_tx.kvstore.key_ip`)."""
    return key_ip(store_key[len(KEY_PREFIX):])


def ttl(record, now, expire_days, penalty_days):
    """Seconds to keep ``record`` written at ``now``: ``expire_days``, or until a day after
    its penalty ends if that is later."""
    keep = expire_days * DAY
    if record.penalty_start:
        keep = max(keep, record.penalty_start + (penalty_days + 1) * DAY - now)
    return max(keep, 1)


def capture(record, now):
    """karma_tool's capture: into the penalty box from now, one more naughty."""
    return Record(int(now), record.naughty + 1, record.nice, record.connects)


def release(record, now):
    """karma_tool's release: out of the penalty box, naughty count cleared."""
    return Record(0, 0, record.nice, record.connects)
