"""A blocking SMTP session for comparing servers that run in other processes (Perl qpsmtpd,
our twistd): every reply as ``(code, [texts])``, and ``"closed"`` once the server hung up.
"""

import socket

#: seconds to wait for a reply
TIMEOUT = 15


def session(port, lines, source=None, timeout=TIMEOUT):
    """Connect to 127.0.0.1:``port`` (from ``source``, a 127/8 address, if given), read the
    greeting, send ``lines`` one at a time while the connection stays open; the greeting and
    the replies, then ``"closed"`` when the server has hung up (a session meant to be compared
    ends with a refusal that disconnects, or QUIT)."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as sock:
        reader = sock.makefile("rb")

        def reply():
            texts = []
            while True:
                try:
                    line = reader.readline()
                except ConnectionResetError:     # it hung up on the line we sent after
                    line = b""
                if not line:
                    return "closed"
                line = line.decode().rstrip("\r\n")
                texts.append(line[4:])
                if line[3:4] != "-":
                    return (int(line[:3]), texts)

        replies.append(reply())
        for line in lines:
            if replies[-1] == "closed":
                break
            try:
                sock.sendall(line.encode() + b"\r\n")
            except OSError:
                replies.append("closed")
                break
            replies.append(reply())
        if replies[-1] != "closed" and reply() == "closed":
            replies.append("closed")
    return replies


def data_reply(port, message):
    """Send ``message`` (text with CRLF line ends, without the final dot) from
    sender@client.example to alice@example.com with smtplib; the reply to the end of DATA as
    ``(code, text)``."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail("sender@client.example")
        client.rcpt("alice@example.com")
        code, _ = client.docmd("DATA")
        assert code == 354, code
        client.send(message.encode() + b".\r\n")
        code, text = client.getreply()
        return code, text.decode()


def held_connection(testcase, port, source, host="127.0.0.1", timeout=TIMEOUT):
    """A connection to ``host``:``port`` from ``source`` that stays open until the test's end
    (or the caller closes it): ``(socket, first line read)``, the line ``b""`` if the server
    closed first. For limits on concurrent connections."""
    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
    testcase.addCleanup(sock.close)
    with sock.makefile("rb") as reader:   # the greeting is all the server sends unasked
        return sock, reader.readline()
