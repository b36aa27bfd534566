"""``qpsmtpd-tx notes ADDRESS [--config DIR]``: a recipient's notes, for debugging settings.

Loads the plugins of the config (as a start would, without listening), asks every notes
source in ``plugins`` (plugins with ``notes_source = True``: ``aliases``,
``rcpt_notes/sql``, ``rcpt_notes/ldap``, ``user_config``) what it would set for ADDRESS,
each on its own, then all of them in order as a session does (a later source wins for a note
two set), and prints, for every setting every loaded filter declares, the value that filter
would use and where it comes from (``note from SOURCE``, ``argument``, ``default``; a note
the filter cannot use is shown and passed over). Nothing is delivered and no other hook runs.
"""

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from qpsmtpd_tx import codes
from qpsmtpd_tx.address import Address
from qpsmtpd_tx.objects import Connection, Transaction
from qpsmtpd_tx.server import SMTPServer, StartupError


def parse_address(text):
    """The Address of ``user@host`` or ``<user@host>``, or None."""
    text = text.strip()
    if not text.startswith("<"):
        text = "<%s>" % text
    address = Address.parse(text)
    return None if address is None or address.is_null else address


def sources(server):
    """The loaded notes sources, in ``plugins`` order."""
    return [p for p in server.plugins if getattr(p, "notes_source", False)]


async def ask(plugin, recipient):
    """Run ``plugin``'s RCPT hook on ``recipient``; its refusal as text, or None."""
    transaction = Transaction(connection=Connection(remote_ip="127.0.0.1"), id="notes")
    result = await maybeDeferred(plugin.hook_rcpt, transaction, recipient, {})
    code = result[0] if isinstance(result, tuple) else result
    if code in (codes.DECLINED, codes.OK, None):
        return None
    text = " ".join(str(part) for part in result[1:]) if isinstance(result, tuple) else ""
    return ("%s %s" % (codes.code_name(code), text)).strip()


async def gather(server, address):
    """``(per_source, combined)``: ``[(source path, notes, refusal or None)]`` with each
    source asked on its own, and the recipient after all of them in order."""
    per_source = []
    combined = Address(address.user, address.host)
    for plugin in sources(server):
        alone = Address(address.user, address.host)
        refusal = await ask(plugin, alone)
        per_source.append((plugin.path, dict(alone.notes), refusal))
        await ask(plugin, combined)
    return per_source, combined


def values(server, recipient, per_source):
    """``[(filter path, note, value, origin)]`` for every declared setting."""
    rows = []
    for plugin in server.policy_plugins:
        for setting in plugin.recipient_settings:
            value = plugin.setting(recipient, setting.note)
            note = recipient.notes.get(setting.note)
            origin = "default"
            if setting.argument is not None and plugin.arguments.get(setting.argument) is not None:
                origin = "argument %s" % setting.argument
            if note is not None:
                source = [s for s, notes, _ in per_source if setting.note in notes]
                where = "note from %s" % (source[-1] if source else "?")
                try:
                    setting.convert(note)
                    origin = where
                except (TypeError, ValueError):
                    origin += " (%s %r cannot be used)" % (where, note)
            rows.append((plugin.path, setting.note, value, origin))
    return rows


def report_lines(address, per_source, combined, rows):
    """The text ``qpsmtpd-tx notes`` prints."""
    lines = ["recipient %s" % address.format(), "", "sources (in plugins order):"]
    if not per_source:
        lines.append("  (none loaded)")
    for path, notes, refusal in per_source:
        shown = " ".join("%s=%s" % (k, _show(v)) for k, v in sorted(notes.items())) or "-"
        lines.append("  %s: %s%s" % (path, shown, "  [answers %s]" % refusal if refusal else ""))
    lines += ["", "notes after all sources: %s" % (" ".join(
        "%s=%s" % (k, _show(v)) for k, v in sorted(combined.notes.items())) or "-"), "",
        "what each filter uses:"]
    if not rows:
        lines.append("  (no loaded plugin reads per-recipient settings)")
    width = max([len(path) + len(note) + 1 for path, note, _, _ in rows] or [0])
    for path, note, value, origin in rows:
        lines.append("  %-*s = %r  (%s)" % (width, "%s %s" % (path, note), value, origin))
    return lines


def _show(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v.format() if hasattr(v, "format") else v) for v in value)
    return str(value)


def main(config, address_text, out, err):
    """Print the report for ``address_text`` with ``config``; the exit status."""
    address = parse_address(address_text)
    if address is None:
        err.write("qpsmtpd-tx: %r is not an address\n" % address_text)
        return 1
    try:
        server = SMTPServer(config)
    except StartupError as e:
        for problem in e.problems:
            err.write("qpsmtpd-tx: %s\n" % problem)
        return 1

    async def run():
        try:
            per_source, combined = await gather(server, address)
        finally:
            await server.stop_plugins()
        return report_lines(address, per_source, combined, values(server, combined, per_source))

    result = _run_reactor(run)
    if isinstance(result, Failure):
        err.write("qpsmtpd-tx: %s\n" % result.getErrorMessage())
        return 1
    out.write("\n".join(result) + "\n")
    return 0


def _run_reactor(function):
    """Run the coroutine ``function()`` on the reactor until it ends; its result or Failure."""
    from twisted.internet import reactor

    outcome = []

    def start():
        d = Deferred.fromCoroutine(function())
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return outcome[0]
