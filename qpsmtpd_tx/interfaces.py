"""The contracts between the core and plugins, as zope.interface declarations."""

from zope.interface import Attribute, Interface

#: Every hook a plugin may register, in roughly the order they fire (qpsmtpd 0.94's list).
HOOK_NAMES = (
    "logging", "config", "post-fork", "pre-connection", "connect",
    "ehlo_parse", "ehlo", "helo_parse", "helo",
    "auth_parse", "auth", "auth-plain", "auth-login", "auth-cram-md5",
    "mail_parse", "mail_pre", "mail", "rcpt_parse", "rcpt_pre", "rcpt",
    "data", "data_headers_end", "data_post", "queue_pre", "queue", "queue_post",
    "vrfy", "noop", "quit", "reset_transaction", "disconnect", "post-connection",
    "unrecognized_command", "deny", "ok", "received_line", "help",
)


def hook_method_name(hook):
    """The method name that registers a hook automatically: ``pre-connection`` → ``hook_pre_connection``."""
    return "hook_" + hook.replace("-", "_")


#: ``hook_pre_connection`` → ``pre-connection``
HOOK_BY_METHOD = {hook_method_name(h): h for h in HOOK_NAMES}


class IPlugin(Interface):
    """A loaded plugin: one instance per line of the ``plugins`` file."""

    name = Attribute("The plugin's name as qpsmtpd escapes it (``queue::maildir``), used in logs and notes.")
    path = Attribute("The name as written in the ``plugins`` file (``queue/maildir``).")
    args = Attribute("The list of arguments from the ``plugins`` line.")

    def init(args):
        """Called once at start-up with the arguments; raise PluginError for bad ones."""

    def register(registry):
        """Called after init and after the ``hook_*`` methods were registered; may add more hooks."""


class ISession(Interface):
    """What a plugin may ask of the SMTP session that runs its hook."""

    connection = Attribute("The Connection of this session.")
    transaction = Attribute("The current Transaction.")

    def respond(code, lines):
        """Send a reply now (used by hooks that return DONE)."""

    def disconnect():
        """Close the connection after the pending replies are sent."""

    def log(level, message, plugin=None):
        """Log a line tagged with this session's connection id."""


