"""Framing of the message text after ``354``: end-of-data detection, dot-unstuffing, size limit.

Rules (RFC 5321 §4.1.1.4 and §4.5.2, hardened against SMTP smuggling):

- The data ends only at ``CRLF . CRLF``: a line holding a single ``.`` whose own terminator and
  the terminator of the line before it are both CRLF (the CRLF that ended the DATA command counts
  for an empty message).
- A ``.`` line with any other terminator combination — ``LF . LF``, ``CRLF . LF``, ``LF . CRLF``,
  ``. CR`` followed by anything but LF, or a bare CR before the dot (``CR . CR``, ``CR . LF``) — is
  a smuggling attempt or a broken client: the reader reports :class:`BadDataEnd` and the session
  answers qpsmtpd's 421 and closes.
- Lines starting with ``.`` lose that dot; CRLF becomes LF in the stored text (as qpsmtpd stores
  it); a bare LF line ending is accepted inside the data.
- Memory is bounded: text is handed on as it arrives, a line longer than ``max_partial`` bytes is
  passed on in pieces (it never ends DATA mode), and the header block is capped.
- Past ``max_size`` bytes (counted after unstuffing, LF endings, as qpsmtpd does) the rest is read
  and dropped; :class:`DataEnd` then says ``too_big``.
"""

import re

import attr

#: the start of a header field line: a name of printable characters but ':' then ':'
_FIELD_START = re.compile(rb"[!-9;-~]+[ \t]*:")
#: a header block larger than this ends, and the rest is body (bounds memory per connection)
MAX_HEADER_BYTES = 256 * 1024


@attr.s(frozen=True, slots=True)
class Headers:
    """The header block ended: ``block`` is its text (LF endings, without the empty line).

    ``separator`` is False when the header ended without an empty line (at a line that is not a
    header field, or at the end of the data); the body then starts right there.
    """

    block = attr.ib()
    separator = attr.ib()


@attr.s(frozen=True, slots=True)
class Body:
    """A piece of the message body (unstuffed, LF endings)."""

    data = attr.ib()


@attr.s(frozen=True, slots=True)
class DataEnd:
    """``CRLF.CRLF`` was read. ``size`` counts every byte of the message, stored or not."""

    size = attr.ib()
    too_big = attr.ib()


@attr.s(frozen=True, slots=True)
class BadDataEnd:
    """A ``.`` line with a bare LF or CR terminator (or after one): the connection must close."""

    context = attr.ib()


class DataReader:
    """Consumes the bytes of one message from a buffer and returns events.

    Call :meth:`consume` with the connection's input buffer each time bytes arrive; it removes
    what it used and returns a list of events. After a :class:`DataEnd` or :class:`BadDataEnd`
    it stops, leaving any following bytes (the next pipelined command) in the buffer.
    """

    def __init__(self, max_size=0, max_partial=65536):
        self.max_size = max_size
        self.max_partial = max_partial
        self.size = 0
        self.too_big = False
        self.done = False
        self._in_header = True
        self._header = bytearray()
        self._line_start = True
        self._prev_crlf = True

    def consume(self, buf):
        """Use complete lines from ``buf`` (a bytearray, modified in place); return events."""
        if self.done:
            return []
        end = buf.rfind(b"\n") + 1
        if end == 0:
            if len(buf) <= self.max_partial:
                return []
            # An over-long line: pass most of it on as text, keeping two bytes so a
            # "\r." split across reads is still seen whole.
            return self._long_line_piece(buf)
        region = bytes(buf[:end])
        events, used = self._consume_lines(region)
        del buf[:used]
        return events

    def _long_line_piece(self, buf):
        piece = bytes(buf[:-2])
        del buf[:-2]
        events = []
        if self._line_start and piece[:1] == b".":
            if piece[1:2] == b"\r":
                return self._bad("dot followed by a bare CR")
            piece = piece[1:]
        if self._has_bare_cr_dot_line(piece, at_end_of_line=False):
            return self._bad("bare CR before a dot line")
        self._line_start = False
        self._store(piece, events)
        return events

    def _consume_lines(self, region):
        """Process ``region`` (ends with LF); return (events, bytes used)."""
        events = []
        if (
            not self._in_header
            and not (self._line_start and region[:1] == b".")
            and b"\n." not in region
            and b"\r." not in region
        ):
            # Fast path: no line starts with a dot and no bare CR precedes one.
            self._prev_crlf = region.endswith(b"\r\n")
            self._line_start = True
            self._store(region.replace(b"\r\n", b"\n"), events)
            return events, len(region)

        body = []
        used = 0
        for line in region.split(b"\n")[:-1]:
            used += len(line) + 1
            crlf = line.endswith(b"\r")
            if self._line_start and line[:1] == b".":
                if line == b".\r" and self._prev_crlf:
                    self._flush(body, events)
                    self._finish(events)
                    return events, used
                if line == b"." or line[:2] == b".\r":
                    self._flush(body, events)
                    return events + self._bad(
                        "dot line ended by a bare LF or CR" if line != b".\r"
                        else "dot line after a bare LF"), used
                line = line[1:]
            if b"\r." in line and self._has_bare_cr_dot_line(line, at_end_of_line=True):
                self._flush(body, events)
                return events + self._bad("bare CR before a dot line"), used
            self._line_start = True
            self._prev_crlf = crlf
            text = (line[:-1] if crlf else line) + b"\n"
            if self._in_header:
                self._flush(body, events)
                if self._header_line(text, events):
                    continue
            body.append(text)
        self._flush(body, events)
        return events, used

    @staticmethod
    def _has_bare_cr_dot_line(line, at_end_of_line):
        """True if ``line`` holds CR '.' followed by CR or by the end of the line."""
        start = 0
        while True:
            i = line.find(b"\r.", start)
            if i < 0:
                return False
            after = line[i + 2:i + 3]
            if after == b"\r" or (after == b"" and at_end_of_line):
                return True
            start = i + 1

    def _header_line(self, text, events):
        """Feed one line while in the header; True if the line was used by the header."""
        if text == b"\n":
            self._end_header(events, separator=True)
            return True
        is_field = (
            _FIELD_START.match(text) is not None
            or (text[:1] in (b" ", b"\t") and self._header)
            or (not self._header and text.startswith(b"From "))
        )
        if is_field and len(self._header) + len(text) <= MAX_HEADER_BYTES:
            self.size += len(text)
            self._header += text
            self._check_size()
            return True
        self._end_header(events, separator=False)
        return False

    def _end_header(self, events, separator):
        self._in_header = False
        if separator:
            self.size += 1
            self._check_size()
        events.append(Headers(bytes(self._header) if not self.too_big else b"", separator))
        self._header = bytearray()

    def _flush(self, body, events):
        if body:
            self._store(b"".join(body), events)
            del body[:]

    def _store(self, text, events):
        if self._in_header:
            # Only reached by the long-line path: a huge first line is body, not header.
            self._end_header(events, separator=False)
        self.size += len(text)
        self._check_size()
        if not self.too_big:
            events.append(Body(text))

    def _check_size(self):
        if self.max_size and self.size > self.max_size:
            self.too_big = True

    def _finish(self, events):
        if self._in_header:
            self._end_header(events, separator=False)
        self.done = True
        events.append(DataEnd(self.size, self.too_big))

    def _bad(self, context):
        self.done = True
        return [BadDataEnd(context)]
