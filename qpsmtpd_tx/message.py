"""A message's header block and its spooled body.

The core stores message text with LF line endings, as qpsmtpd does. The header is kept as its
raw fields so nothing the client sent is lost or reformatted; the body is spooled to memory and,
past ``size_threshold`` bytes, to a file in ``spool_dir``, so memory stays bounded.
"""

import io
import itertools
import os
import re
import tempfile

_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:")
#: RFC 5322 ftext: printable ASCII but the colon
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
#: a line break and the white space that continues a folded field
_UNFOLD = re.compile(r"\n[ \t]+")


#: names found to be field names (the few the core and plugins add, so a set lookup per field
#: added instead of a pattern match; bounded, since a milter may name any)
_GOOD_NAMES = set()


def is_field_name(name):
    """True if ``name`` can name a header field (printable ASCII but ``:``, RFC 5322)."""
    if name in _GOOD_NAMES:
        return True
    if _FIELD_NAME.fullmatch(name) is None:
        return False
    if len(_GOOD_NAMES) < 256:
        _GOOD_NAMES.add(name)
    return True


def _well_folded(value):
    """True if every line break of ``value`` is LF and starts a continuation line that holds
    more than white space (the usual multi-line value, a Received field: kept as it is)."""
    if "\r" in value:
        return False
    lines = value.split("\n")
    for line in lines[1:]:
        if line[:1] not in (" ", "\t") or not line.strip():
            return False
    return bool(lines[0].strip())


def field_value(value):
    """``value`` made safe for a header field: LF line ends only, and each line after the
    first starts with white space (a folded field). A line break that would start another
    field (``x\\nBcc: …``, a CR, an empty line ending the header) is unfolded into a space:
    a plugin or back end repeating text it was given cannot forge fields or end the header."""
    if "\n" not in value and "\r" not in value:
        return value
    if _well_folded(value):
        return value
    lines = _LINE_BREAK.split(value.strip("\r\n"))
    out = [lines[0]]
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and line.strip():
            out.append(line)
        elif line.strip():
            out[-1] += " " + line.strip()
    return "\n".join(out)


def field_bytes(name, value):
    """The raw field ``name: value`` with its LF (value through :func:`field_value`);
    ValueError if ``name`` is not a field name."""
    if not is_field_name(name):
        raise ValueError("%r is not a header field name" % (name,))
    return ("%s: %s\n" % (name, field_value(value))).encode("utf-8", "surrogateescape")


class Header:
    """The header fields of a message, in order, kept as raw bytes.

    Each field is ``(name, raw)`` where ``raw`` is the whole field including its continuation
    lines and the final LF. Lines that are not fields (an mbox ``From `` line) are kept as
    fields with an empty name so they are written back unchanged.
    """

    #: the ``raw`` of the Authentication-Results field :mod:`qpsmtpd_tx.authresults` last
    #: wrote, so that it finds its field again without parsing the others (None: not known)
    auth_results_raw = None

    def __init__(self, fields=None):
        self.fields = list(fields or [])

    @classmethod
    def parse(cls, block):
        """Parse a LF-terminated header block (without the empty separator line)."""
        fields = []
        # LF ends a line, nothing else: bytes.splitlines would also end one at a bare CR
        # and so make a field of what follows it (RFC 5322 section 2.2: CR only in CRLF)
        lines = block.split(b"\n")
        if not lines[-1]:
            lines.pop()
        for line in lines:
            line += b"\n"
            if line[:1] in (b" ", b"\t") and fields:
                name, raw = fields[-1]
                fields[-1] = (name, raw + line)
                continue
            m = _FIELD_START.match(line)
            fields.append((m.group(1).decode("ascii") if m else "", line))
        return cls(fields)

    def get(self, name):
        """All values of the named field (case-insensitive), unfolded, as text."""
        lname = name.lower()
        size = len(lname)
        values = []
        # field names are ASCII (parse, add), lower() keeps their length: a name of another
        # length is passed over without making its lower-case copy. (A loop, not a list
        # comprehension: that is a function made and called at each call, on Python 3.11.)
        for n, raw in self.fields:
            if len(n) == size and n.lower() == lname:
                values.append(self._value(raw))
        return values

    def get_first(self, name, default=None):
        """The first value of the named field, or ``default``."""
        values = self.get(name)
        return values[0] if values else default

    def count(self, name):
        """How many fields have this name."""
        lname = name.lower()
        size = len(lname)
        found = 0
        for n, _ in self.fields:     # (as get)
            if len(n) == size and n.lower() == lname:
                found += 1
        return found

    def add(self, name, value, prepend=False):
        """Add a field; ``value`` may contain ``\\n`` + whitespace continuation lines (see
        :func:`field_bytes`: no value can start another field)."""
        self.add_field(name, field_bytes(name, value), prepend)

    def add_field(self, name, raw, prepend=False):
        """Add a whole field ``raw`` that :func:`field_bytes` made for ``name`` (its checks
        done once for a field added to many messages)."""
        if prepend:
            self.fields.insert(0, (name, raw))
        else:
            self.fields.append((name, raw))

    def delete(self, name):
        """Remove every field with this name."""
        lname = name.lower()
        self.fields = [(n, raw) for n, raw in self.fields if n.lower() != lname]

    def replace(self, name, value):
        """Set a field to one value, in the place of the first existing one (or at the end)."""
        lname = name.lower()
        raw = field_bytes(name, value)
        for i, (n, _) in enumerate(self.fields):
            if n.lower() == lname:
                self.fields[i] = (name, raw)
                self.fields = self.fields[: i + 1] + [
                    f for f in self.fields[i + 1:] if f[0].lower() != lname
                ]
                return
        self.fields.append((name, raw))

    def as_bytes(self):
        """The header block as written to a queue (LF endings, no separator line)."""
        return b"".join(raw for _, raw in self.fields)

    def __len__(self):
        return len(self.fields)

    @staticmethod
    def _value(raw):
        text = raw.decode("utf-8", "surrogateescape")
        value = text.partition(":")[2].strip("\n")
        if "\n" in value:      # folded: most fields are not
            value = _UNFOLD.sub(" ", value)
        return value.strip()


_spool_counter = itertools.count(1)
#: ``qpsmtpd-tx.<pid>.<n>.<random>``: the pid tells the spool files of a process that is gone
_SPOOL_PREFIX = "qpsmtpd-tx.%d.%d."
_SPOOL_NAME = re.compile(r"qpsmtpd-tx\.([0-9]+)\.[0-9]+\.[A-Za-z0-9_]+\Z")


def spool_file_prefix():
    """A new name prefix for a spool file: one that :func:`remove_stale_spool_files` removes
    once this process is gone (for other spool files than bodies, e.g. a scanner's copy)."""
    return _SPOOL_PREFIX % (os.getpid(), next(_spool_counter))


def message_id(header):
    """The first line of ``header``'s first Message-Id field, stripped ('' if none), as the
    queue plugins quote it in their replies; ``header`` may be None (no message yet)."""
    if header is None:
        return ""
    return (header.get_first("Message-Id") or "").split("\n")[0].strip()


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone else's process
    return True


def remove_stale_spool_files(spool_dir):
    """Delete the spool files a killed server left in ``spool_dir``; return their names.

    Only names BodySpool makes are considered, and only those of processes that are gone
    (siblings under ``--workers`` keep theirs). A file of our own pid comes from an earlier
    process that had it: call this before this process spools anything. Other files stay.
    """
    removed = []
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return removed
    for name in names:
        match = _SPOOL_NAME.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _process_alive(pid):
            continue
        try:
            os.unlink(os.path.join(spool_dir, name))
        except OSError:
            continue
        removed.append(name)
    return removed


class BodySpool:
    """The message body: in memory until ``threshold`` bytes, then in a file in ``spool_dir``.

    Readers get their own file object (``open``), so a queue plugin may read the body from a
    thread while the reactor goes on.
    """

    def __init__(self, spool_dir=None, threshold=0):
        self.spool_dir = spool_dir
        self.threshold = threshold
        #: the body in memory, made at the first write (most transactions get no body)
        self._memory = None
        self._file = None
        self.filename = None
        self.size = 0

    def write(self, data):
        """Append body bytes."""
        if not data:
            return
        self.size += len(data)
        if self._file is None and self.size > self.threshold and self.spool_dir is not None:
            self._spill()
        if self._file is not None:
            self._file.write(data)
        else:
            if self._memory is None:
                self._memory = io.BytesIO()
            self._memory.write(data)

    def _spill(self):
        os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
        fd, self.filename = tempfile.mkstemp(
            prefix=spool_file_prefix(), dir=self.spool_dir
        )
        self._file = os.fdopen(fd, "w+b")
        if self._memory is not None:
            self._file.write(self._memory.getvalue())
        self._memory = None

    def finish(self):
        """Flush buffered writes so readers see the whole body."""
        if self._file is not None:
            self._file.flush()

    def open(self):
        """A new binary file object reading the body from its start."""
        if self._file is not None:
            self._file.flush()
            return open(self.filename, "rb")
        return io.BytesIO(self._memory.getvalue() if self._memory is not None else b"")

    def getvalue(self):
        """The whole body as bytes (reads the spool file if the body spilled)."""
        with self.open() as f:
            return f.read()

    def discard(self):
        """Delete the spool file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None
            try:
                os.unlink(self.filename)
            except OSError:
                pass
        self._memory = None
        self.size = 0
