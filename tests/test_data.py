"""DATA framing: end of data, dot-unstuffing, smuggling variants (also through the real
protocol after a long line), size limit, bounded memory."""

from twisted.trial import unittest

from qpsmtpd_tx.data import MAX_HEADER_BYTES, BadDataEnd, Body, DataEnd, DataReader, Headers
from tests.support.harness import MemoryClient, make_server


def read_all(chunks, max_size=0, max_partial=65536):
    """Feed chunks one by one; return (events, leftover bytes)."""
    reader = DataReader(max_size=max_size, max_partial=max_partial)
    buf = bytearray()
    events = []
    for chunk in chunks:
        buf += chunk
        events.extend(reader.consume(buf))
    return events, bytes(buf)


def message_of(events):
    """(header block, separator, body, end event) from a list of events."""
    headers = [e for e in events if isinstance(e, Headers)]
    body = b"".join(e.data for e in events if isinstance(e, Body))
    ends = [e for e in events if isinstance(e, (DataEnd, BadDataEnd))]
    return headers, body, ends


class EndOfDataTests(unittest.TestCase):
    def test_simple_message(self):
        events, rest = read_all([b"Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n"])
        headers, body, ends = message_of(events)
        self.assertEqual(headers, [Headers(b"Subject: hi\n", True)])
        self.assertEqual(body, b"hello\n")
        self.assertEqual(ends, [DataEnd(size=len(b"Subject: hi\n\nhello\n"), too_big=False)])
        self.assertEqual(rest, b"QUIT\r\n")

    def test_empty_message(self):
        events, rest = read_all([b".\r\n"])
        self.assertEqual(events, [Headers(b"", False), DataEnd(0, False)])

    def test_byte_by_byte(self):
        data = b"A: b\r\n\r\n..dot\r\nline\r\n.\r\n"
        events, rest = read_all([data[i:i + 1] for i in range(len(data))])
        headers, body, ends = message_of(events)
        self.assertEqual(body, b".dot\nline\n")
        self.assertEqual(ends, [DataEnd(len(b"A: b\n\n.dot\nline\n"), False)])
        self.assertEqual(rest, b"")

    def test_dot_unstuffing(self):
        events, _ = read_all([b"X: y\r\n\r\n..\r\n...two\r\n.x\r\n.\r\n"])
        _, body, _ = message_of(events)
        self.assertEqual(body, b".\n..two\nx\n")

    def test_bare_lf_lines_inside_are_kept(self):
        events, _ = read_all([b"X: y\n\nbody\nmore\r\n.\r\n"])
        headers, body, ends = message_of(events)
        self.assertEqual(headers, [Headers(b"X: y\n", True)])
        self.assertEqual(body, b"body\nmore\n")
        self.assertIsInstance(ends[0], DataEnd)

    def test_bare_cr_inside_a_line_is_kept(self):
        # Only CRLF becomes LF: a CR inside a line is text (qpsmtpd keeps it too), whether the
        # body also has bare LF lines or not, in one read or byte by byte.
        for data in (b"X: y\r\n\r\na\rb\r\nc\r\n.\r\n",
                     b"X: y\r\n\r\na\rb\r\nc\nd\r\n.\r\n",
                     b"X: y\r\n\r\nend\r\r\nx\r\n.\r\n"):
            for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
                _, body, ends = message_of(read_all(chunks)[0])
                expected = data.split(b"\r\n\r\n", 1)[1][:-3].replace(b"\r\n", b"\n")
                self.assertEqual(body, expected, data)
                self.assertIsInstance(ends[0], DataEnd)

    def test_dot_in_middle_of_line_is_text(self):
        events, _ = read_all([b"X: y\r\n\r\na.b\r\n. \r\n.\r\n"])
        _, body, _ = message_of(events)
        self.assertEqual(body, b"a.b\n \n")


class SmugglingTests(unittest.TestCase):
    """Every end-of-data variant other than CRLF.CRLF is refused, wherever it is split."""

    variants = {
        "LF.LF": b"X: y\r\n\r\ntext\n.\nMAIL FROM:<evil@x>\r\n",
        "CRLF.LF": b"X: y\r\n\r\ntext\r\n.\nMAIL FROM:<evil@x>\r\n",
        "LF.CRLF": b"X: y\r\n\r\ntext\n.\r\nMAIL FROM:<evil@x>\r\n",
        "CR.CR": b"X: y\r\n\r\ntext\r.\rMAIL FROM:<evil@x>\r\n",
        "CR.CRLF": b"X: y\r\n\r\ntext\r.\r\nMAIL FROM:<evil@x>\r\n",
        "CR.LF": b"X: y\r\n\r\ntext\r.\nMAIL FROM:<evil@x>\r\n",
        "CRLF.CR": b"X: y\r\n\r\ntext\r\n.\rMAIL FROM:<evil@x>\r\n",
        "in header LF.LF": b"X: y\n.\n",
    }

    def test_variants_whole(self):
        for name, data in self.variants.items():
            events, _ = read_all([data])
            _, _, ends = message_of(events)
            self.assertEqual(len(ends), 1, name)
            self.assertIsInstance(ends[0], BadDataEnd, name)

    def test_variants_split_everywhere(self):
        for name, data in self.variants.items():
            for cut in range(1, len(data)):
                events, _ = read_all([data[:cut], data[cut:]])
                _, _, ends = message_of(events)
                self.assertEqual([type(e) for e in ends], [BadDataEnd], (name, cut))

    def test_no_text_after_bad_end_is_read(self):
        events, rest = read_all([self.variants["LF.LF"]])
        self.assertIn(b"MAIL FROM", rest)
        self.assertNotIn(b"MAIL", message_of(events)[1])


class LongLineSmugglingTests(unittest.TestCase):
    """The variants right after a line longer than ``max_partial``, which is passed on in
    pieces: a TCP segment may end anywhere around the dot line (4,222 split runs found one
    miss: ``CR . CR`` when a segment ended right after it)."""

    HEADER = b"X: y\r\n\r\n"

    def variants_after_long_line(self, length):
        """{name: (data, where the long line ends)}: each body variant, its "text" long."""
        out = {}
        for name, data in SmugglingTests.variants.items():
            if not data.startswith(self.HEADER + b"text"):
                continue
            # then a real end, so that a miss shows as a message accepted with the dot line
            tail = data[len(self.HEADER) + len(b"text"):] + b".\r\n"
            out[name] = (self.HEADER + b"z" * length + tail, len(self.HEADER) + length)
        return out

    def assert_refused(self, chunks, max_partial, label):
        events, _ = read_all(chunks, max_partial=max_partial)
        _, body, ends = message_of(events)
        self.assertEqual([type(e) for e in ends], [BadDataEnd], label)
        self.assertNotIn(b"\r.", body, label)

    def test_every_split_around_the_dot_line(self):
        # The header comes alone and the long line in two parts, as over TCP, so the reader
        # takes its long-line path; then two more cuts anywhere near the dot line.
        max_partial = 64
        for name, (data, boundary) in self.variants_after_long_line(3 * max_partial).items():
            window = range(boundary - 4, boundary + 8)
            half = len(self.HEADER) + max_partial // 2
            for first in window:
                for second in window:
                    if second < first:
                        continue
                    chunks = [self.HEADER, data[len(self.HEADER):half], data[half:first],
                              data[first:second], data[second:]]
                    self.assert_refused(chunks, max_partial, (name, first, second))

    def test_default_limit_split_after_the_dot_line(self):
        # the case found: a line over 64 KiB, a segment ending anywhere around the dot line
        for name, (data, boundary) in self.variants_after_long_line(65536 + 100).items():
            for cut in range(boundary - 4, boundary + 8):
                self.assert_refused([self.HEADER, data[len(self.HEADER):cut], data[cut:]],
                                    65536, (name, cut))

    def test_session_closes_instead_of_queueing(self):
        # the same through the real protocol: the segment ends right after CR.CR
        data, boundary = self.variants_after_long_line(65536 + 100)["CR.CR"]
        client = MemoryClient(make_server(self, ["rcpt_ok", "scripted queue OK"]))
        for line in ("HELO c.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@example.com>"):
            client.command(line)
        self.assertEqual(client.command("DATA"), "354 go ahead\r\n")
        replies = "".join(client.send(segment) for segment in (
            self.HEADER, data[len(self.HEADER):boundary + 3], data[boundary + 3:]))
        self.assertEqual(replies, "421 See http://smtpd.develooper.com/barelf.html\r\n")
        self.assertTrue(client.closed)
        self.assertNotIn("scripted_message", client.session.connection.notes)


class SizeTests(unittest.TestCase):
    def test_exact_limit_is_accepted(self):
        msg = b"X: y\n\n" + b"a" * 93 + b"\n"
        self.assertEqual(len(msg), 100)
        events, _ = read_all([msg.replace(b"\n", b"\r\n") + b".\r\n"], max_size=100)
        self.assertEqual(message_of(events)[2], [DataEnd(100, False)])

    def test_one_over_limit(self):
        msg = b"X: y\n\n" + b"a" * 94 + b"\n"
        events, rest = read_all([msg.replace(b"\n", b"\r\n") + b".\r\nQUIT\r\n"], max_size=100)
        self.assertEqual(message_of(events)[2], [DataEnd(101, True)])
        self.assertEqual(rest, b"QUIT\r\n")

    def test_excess_is_not_stored(self):
        chunk = (b"b" * 998 + b"\r\n") * 100
        events, _ = read_all([b"X: y\r\n\r\n"] + [chunk] * 10 + [b".\r\n"], max_size=10000)
        stored = sum(len(e.data) for e in events if isinstance(e, Body))
        self.assertLessEqual(stored, 10000)
        self.assertTrue(message_of(events)[2][0].too_big)


class BoundedMemoryTests(unittest.TestCase):
    def test_long_line_stays_in_data_mode(self):
        reader = DataReader(max_partial=1024)
        buf = bytearray(b"X: y\r\n\r\n")
        events = reader.consume(buf)
        line = b"z" * 100000
        for i in range(0, len(line), 4096):
            buf += line[i:i + 4096]
            events.extend(reader.consume(buf))
            self.assertLessEqual(len(buf), 1024 + 4096)
        buf += b"\r\nQUIT\r\n.\r\n"
        events.extend(reader.consume(buf))
        _, body, ends = message_of(events)
        self.assertEqual(body, line + b"\nQUIT\n")
        self.assertEqual(ends, [DataEnd(len(b"X: y\n\n") + len(line) + 6, False)])

    def test_header_is_capped(self):
        header = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 90) for i in range(5000))
        events, _ = read_all([header, b"\r\nbody\r\n.\r\n"])
        headers, body, ends = message_of(events)
        self.assertLessEqual(len(headers[0].block), MAX_HEADER_BYTES)
        self.assertFalse(headers[0].separator)
        self.assertTrue(body.endswith(b"\nbody\n"))
        self.assertEqual(len(headers[0].block) + len(body) + 0, ends[0].size)


class HeaderSplitTests(unittest.TestCase):
    def test_no_header_block_keeps_text(self):
        events, _ = read_all([b"just text\r\nmore\r\n.\r\n"])
        headers, body, _ = message_of(events)
        self.assertEqual(headers, [Headers(b"", False)])
        self.assertEqual(body, b"just text\nmore\n")

    def test_continuation_and_mbox_from(self):
        events, _ = read_all([b"From a@b Mon\r\nSubject: x\r\n  y\r\n\r\nB\r\n.\r\n"])
        headers, body, _ = message_of(events)
        self.assertEqual(headers[0].block, b"From a@b Mon\nSubject: x\n  y\n")
        self.assertEqual(body, b"B\n")


def reference_framing(data):
    """The framing rules written the slow, obvious way: ('end'|'bad'|'more', stored text)."""
    pos, prev_crlf, out = 0, True, []
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return "more", b"".join(out)
        line = data[pos:nl]
        pos = nl + 1
        if line[:1] == b".":
            if line == b".\r" and prev_crlf:
                return "end", b"".join(out)
            if line == b"." or line[:2] == b".\r":
                return "bad", None
            line = line[1:]
        i = line.find(b"\r.")
        while i >= 0:
            if line[i + 2:i + 3] in (b"\r", b""):
                return "bad", None
            i = line.find(b"\r.", i + 1)
        prev_crlf = line.endswith(b"\r")
        out.append((line[:-1] if prev_crlf else line) + b"\n")


class RandomizedFramingTests(unittest.TestCase):
    """The fast framing agrees with the reference on random input, however it is split."""

    def test_random_inputs(self):
        import random
        rng = random.Random(5321)
        pieces = [b"\r\n", b"\n", b"\r", b".", b"..", b"a", b"Subject: x", b" ", b"\r\n.\r\n"]
        for case in range(3000):
            data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 1 else []
            chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
            events, _ = read_all(chunks)
            kind, text = reference_framing(data)
            ends = [e for e in events if isinstance(e, (DataEnd, BadDataEnd))]
            if kind == "more":
                self.assertEqual(ends, [], (case, data))
                continue
            self.assertEqual(len(ends), 1, (case, data))
            if kind == "bad":
                self.assertIsInstance(ends[0], BadDataEnd, (case, data))
                continue
            self.assertIsInstance(ends[0], DataEnd, (case, data))
            headers = [e for e in events if isinstance(e, Headers)]
            body = b"".join(e.data for e in events if isinstance(e, Body))
            got = headers[0].block + (b"\n" if headers[0].separator else b"") + body
            self.assertEqual(got, text, (case, data))
            self.assertEqual(ends[0].size, len(text), (case, data))


class _LineByLineReader(DataReader):
    """The reader without its quick path for a whole header: every line on its own."""

    def _whole_header(self, region, events):
        return 0


class WholeHeaderTests(unittest.TestCase):
    """The quick path for a header that arrives whole gives exactly the events of the
    line-by-line path (the same header block, separator, body, size and end), on random
    header-like input, in one read and split."""

    def events(self, reader, chunks):
        buf, events = bytearray(), []
        for chunk in chunks:
            buf += chunk
            events.extend(reader.consume(buf))
        return events, bytes(buf)

    def test_same_events_as_line_by_line(self):
        import random
        rng = random.Random(3207)
        pieces = [b"Subject: x\r\n", b"X-A:1\r\n", b"\tfolded\r\n", b" more\r\n", b"From a\r\n",
                  b"no colon\r\n", b"\r\n", b"\n", b"\r", b".", b"..x\r\n", b"a\rb\r\n",
                  b"Bad Name: v\r\n", b"\r\n.\r\n", b"body\r\n"]
        for case in range(4000):
            data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) + b"\r\n.\r\n"
            cut = rng.randint(1, len(data) - 1)
            for chunks in ([data], [data[:cut], data[cut:]]):
                max_size = rng.choice([0, 0, 20])
                quick = self.events(DataReader(max_size=max_size), chunks)
                plain = self.events(_LineByLineReader(max_size=max_size), chunks)
                self.assertEqual(quick, plain, (case, data, chunks))

    def test_quick_path_is_taken_for_plain_headers(self):
        # (else the test above would compare the slow path with itself)
        used = []

        class Watching(DataReader):
            def _whole_header(self, region, events):
                n = DataReader._whole_header(self, region, events)
                used.append(n)
                return n

        self.events(Watching(), [b"Subject: x\r\nX-A: 1\r\n folded\r\n\r\nbody\r\n.\r\n"])
        self.assertEqual(used, [len(b"Subject: x\r\nX-A: 1\r\n folded\r\n\r\n")])
