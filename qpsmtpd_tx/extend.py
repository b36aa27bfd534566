"""Plugins that build on other plugins: qpsmtpd's ``isa_plugin``, in Python.

A plugin file is loaded by path, under a name of the loader's making, so it cannot ``import``
another plugin file. Code that several plugins need belongs in a ``qpsmtpd_tx`` module; to
extend a whole plugin, or use what one plugin file defines, a plugin file asks for it by the
name a ``plugins`` line would use::

    from qpsmtpd_tx.extend import isa_plugin

    Base = isa_plugin("queue/smtp-forward")

    class MyForward(Base):
        ...

The name is looked up as the loader looks up ``plugins`` lines (aliases are followed), in the
plugin directories of the load in progress, else in qpsmtpd-tx's own plugin directory. Each
file is compiled once: the class returned is the one the named plugin itself runs with. As in
qpsmtpd, the extending plugin keeps its own name, arguments and config; unlike qpsmtpd (which
compiled a private copy of the other file into the plugin's package), its class is a subclass
of the other plugin's class, so methods are overridden and reached with ``super()``.
"""

from qpsmtpd_tx.loader import (PerlPluginError, find_plugin_file, load_plugin_module,
                               perl_plugin_message, plugin_dirs_in_use, resolve_plugin_class)
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.plugin import PluginError


def _search_dirs():
    return plugin_dirs_in_use() or default_plugin_dirs()


def isa_plugin(name):
    """The plugin class of plugin ``name`` (``"queue/smtp-forward"``), for a plugin to subclass.

    Raises :class:`qpsmtpd_tx.plugin.PluginError` if there is no such plugin; loading the
    extending plugin then fails with the ``plugins`` file and line, as for any plugin error.
    """
    try:
        cls, _ = resolve_plugin_class(name, _search_dirs())
    except PluginError as e:
        raise PluginError("isa_plugin(%r): %s" % (name, e))
    return cls


def plugin_module(name):
    """The module of plugin file ``name`` (aliases not followed), for its functions and constants."""
    dirs = _search_dirs()
    path = find_plugin_file(name, dirs)
    if path is None:
        raise PluginError("plugin_module(%r): plugin not found (looked in %s)"
                          % (name, ", ".join(dirs)))
    try:
        return load_plugin_module(path)
    except PerlPluginError:
        raise PluginError(perl_plugin_message(name, path))
