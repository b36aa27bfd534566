"""Large messages for the memory tests: sent in chunks, checked by hash, never held whole.

``send_big_message`` speaks SMTP over a plain socket and generates the body line by line as it
sends it, so neither the test process nor the check needs the message in memory; the stored
copy is compared through ``body_digest_of_file`` (the SHA-256 of everything after the first
empty line, i.e. the body with LF line endings, as queues store it).
"""

import hashlib
import socket

MIB = 1 << 20
#: one body line (before its number): long lines keep the server's per-line work small
_FILLER = b"x" * 900


def peak_rss_kib(pid):
    """The peak resident set size (VmHWM) of process ``pid``, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/%d/status" % pid)


def body_lines(size):
    """CRLF body lines adding up to at least ``size`` bytes (none starts with a dot)."""
    sent = 0
    n = 0
    while sent < size:
        line = b"%010d %s\r\n" % (n, _FILLER)
        n += 1
        sent += len(line)
        yield line


class _Replies:
    """Reads SMTP replies from a blocking socket."""

    def __init__(self, sock):
        self.file = sock.makefile("rb")

    def read(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed; got %r" % lines)
            lines.append(line.rstrip(b"\r\n").decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(lines[0][:3]), [text[4:] for text in lines]


def send_big_message(port, size, sender="a@b.example", recipients=("u@example.com",),
                     timeout=300.0):
    """Send one message with a body of about ``size`` bytes to 127.0.0.1:``port``.

    Returns ``(code, text lines of the reply to the final dot, SHA-256 hex digest of the body
    as stored with LF line endings)``.
    """
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        replies = _Replies(sock)
        _expect(replies, 220)
        for command, code in ([("EHLO client.example", 250), ("MAIL FROM:<%s>" % sender, 250)]
                              + [("RCPT TO:<%s>" % r, 250) for r in recipients]
                              + [("DATA", 354)]):
            sock.sendall(command.encode() + b"\r\n")
            _expect(replies, code, command)
        pending = [b"From: <%s>\r\nSubject: big\r\nMessage-Id: <big@b.example>\r\n\r\n"
                   % sender.encode()]
        buffered = len(pending[0])
        for line in body_lines(size):
            digest.update(line[:-2] + b"\n")
            pending.append(line)
            buffered += len(line)
            if buffered >= MIB:
                sock.sendall(b"".join(pending))
                pending, buffered = [], 0
        sock.sendall(b"".join(pending) + b".\r\n")
        code, text = replies.read()
        sock.sendall(b"QUIT\r\n")
    return code, text, digest.hexdigest()


def _expect(replies, code, command="greeting"):
    got = replies.read()
    if got[0] != code:
        raise AssertionError("%s: expected %d, got %r" % (command, code, got))


def body_digest_of_file(path, empty_lines=1, chunk_size=MIB):
    """SHA-256 hex digest of what follows the ``empty_lines``-th empty line (``\\n\\n``) of
    a file (2 for a file that holds an envelope block before the message)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        head = b""
        while empty_lines:
            chunk = f.read(chunk_size)
            if not chunk:
                raise AssertionError("%s has too few empty lines" % path)
            head += chunk
            end = head.find(b"\n\n")
            while end >= 0 and empty_lines:
                empty_lines -= 1
                head = head[end + 2:]
                end = head.find(b"\n\n") if empty_lines else -1
            if empty_lines:
                head = head[-1:]
        digest.update(head)
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rss_growth_kib(process, port, size, **kwargs):
    """Send a small message (so lazy imports and pools exist), then one of ``size`` bytes to
    the server ``process`` (a real twistd); returns ``(peak RSS growth in KiB during the big
    message, its reply code, reply text, body digest)``."""
    code, text, _ = send_big_message(port, 4096, **kwargs)
    if code != 250:
        raise AssertionError("the warm-up message got %d %s" % (code, text))
    before = peak_rss_kib(process.pid)
    code, text, digest = send_big_message(port, size, **kwargs)
    return peak_rss_kib(process.pid) - before, code, text, digest
