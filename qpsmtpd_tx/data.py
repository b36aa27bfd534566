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
#: a CR that does not start a CRLF. Text without one (nearly all mail) takes the quick paths:
#: no "CR ." dot line can be in it, and deleting every CR is the CRLF → LF conversion (a C
#: loop, ten times faster on a 10 KiB body than replacing CRLF by LF).
_BARE_CR = re.compile(rb"\r(?!\n)")
#: a header block (LF endings) of field lines and their continuation lines, a field first
_FIELD_LINES = re.compile(rb"[!-9;-~]+[ \t]*:[^\n]*\n(?:[!-9;-~]+[ \t]*:[^\n]*\n|[ \t][^\n]*\n)*")


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


def _find_dot_line(region, start, bare_cr=True):
    """Position of the first "." after ``start`` that follows a CR or LF and is followed by
    one (a dot line, whatever its terminators), or None. bytes.find keeps this at C speed.
    ``bare_cr``: False when ``region`` has no CR outside a CRLF (so no "CR ." to look for)."""
    found = None
    for pattern in ((b"\n.", b"\r.") if bare_cr else (b"\n.",)):
        i = region.find(pattern, start)
        while i >= 0 and (found is None or i + 1 < found):
            if region[i + 2:i + 3] in (b"\r", b"\n"):
                found = i + 1
                break
            i = region.find(pattern, i + 1)
    return found


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
            # An over-long line: pass most of it on as text (see _long_line_piece).
            return self._long_line_piece(buf)
        region = bytes(buf[:end])
        events, used = self._consume_lines(region)
        del buf[:used]
        return events

    def _long_line_piece(self, buf):
        # The whole buffer is checked, and all of it but the last two bytes passed on: a
        # 3-byte "\r.\r" that starts in those two is seen whole with the next read, and
        # one that starts earlier is whole here (checking only the piece missed it when
        # the buffer ended right after it).
        if self._line_start and buf[:2] == b".\r":
            return self._bad("dot followed by a bare CR")
        if self._has_bare_cr_dot_line(buf, at_end_of_line=False):
            return self._bad("bare CR before a dot line")
        piece = bytes(buf[:-2])
        del buf[:-2]
        events = []
        if self._line_start and piece[:1] == b".":
            piece = piece[1:]
        self._line_start = False
        self._store(piece, events)
        return events

    def _consume_lines(self, region):
        """Process ``region`` (ends with LF); return (events, bytes used)."""
        events = []
        used = self._whole_header(region, events) if self._in_header else 0
        while self._in_header and used < len(region):
            # The header is read line by line (it is short); the body in bulk below.
            nl = region.index(b"\n", used) + 1
            line = region[used:nl - 1]
            bad = self._check_line_start(line)
            if bad == "end":
                self._finish(events)
                return events, nl
            if bad:
                return events + self._bad(bad), nl
            if self._line_start and line[:1] == b".":
                line = line[1:]
            crlf = line.endswith(b"\r")
            self._prev_crlf = crlf
            self._line_start = True
            text = (line[:-1] if crlf else line) + b"\n"
            used = nl
            if not self._header_line(text, events):
                self._store(text, events)
        if used < len(region):
            used += self._consume_body(region, used, events)
        return events, used

    def _whole_header(self, region, events):
        """The quick path for a header that arrived whole and plain: CRLF field lines (no dot
        line, no bare CR or LF, a field first) up to an empty line, taken in one step; the
        bytes used, or 0 when anything is unusual (the line-by-line path then decides)."""
        if not (self._line_start and self._prev_crlf):
            return 0
        end = region.find(b"\r\n\r\n")
        if end < 0:
            return 0
        block = region[:end + 2]
        if (block[:1] == b"." or b"\n." in block or _BARE_CR.search(block) is not None
                or block.count(b"\n") != block.count(b"\r\n")
                or len(self._header) + len(block) > MAX_HEADER_BYTES):
            return 0
        text = block.replace(b"\r", b"")
        if _FIELD_LINES.fullmatch(text) is None:
            return 0
        self.size += len(text)
        self._header += text
        self._check_size()
        self._end_header(events, separator=True)
        return end + 4

    def _check_line_start(self, line):
        """For one line (without its LF): "end", a reason to refuse, or None."""
        if self._line_start and line[:1] == b".":
            if line == b".\r" and self._prev_crlf:
                return "end"
            if line == b"." or line[:2] == b".\r":
                return ("dot line ended by a bare LF or CR" if line != b".\r"
                        else "dot line after a bare LF")
        if b"\r." in line and self._has_bare_cr_dot_line(line, at_end_of_line=True):
            return "bare CR before a dot line"
        return None

    def _consume_body(self, region, start, events):
        """Bulk-process body text ``region[start:]``; return the bytes used."""
        bare_cr = _BARE_CR.search(region, start) is not None
        if self._line_start and region[start:start + 1] == b"." and region[start + 1:start + 2] in b"\r\n":
            candidate = start
        else:
            candidate = _find_dot_line(region, start, bare_cr)
        if candidate is None:
            self._store_bulk(region[start:], events, bare_cr)
            return len(region) - start
        crlf_before = (region[candidate - 2:candidate] == b"\r\n" if candidate >= 2
                       else candidate == 0 and self._prev_crlf)
        crlf_after = region[candidate + 1:candidate + 3] == b"\r\n"
        self._store_bulk(region[start:candidate], events, bare_cr)
        if crlf_before and crlf_after:
            self._finish(events)
            return candidate + 3 - start
        if region[candidate - 1:candidate] == b"\r" and not crlf_before:
            reason = "bare CR before a dot line"
        elif crlf_after:
            reason = "dot line after a bare LF"
        else:
            reason = "dot line ended by a bare LF or CR"
        events.extend(self._bad(reason))
        return candidate + 2 - start

    def _store_bulk(self, chunk, events, bare_cr):
        """Store complete lines (``chunk`` ends with LF or is empty): unstuff, CRLF → LF.
        ``bare_cr``: False if ``chunk`` has no CR outside a CRLF."""
        if not chunk:
            return
        starts_with_dot = self._line_start and chunk[:1] == b"."
        self._prev_crlf = chunk.endswith(b"\r\n")
        self._line_start = True
        text = chunk.replace(b"\r\n", b"\n") if bare_cr else chunk.replace(b"\r", b"")
        if b"\n." in text:
            text = text.replace(b"\n.", b"\n")
        if starts_with_dot:
            text = text[1:]
        self._store(text, events)

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
