"""A private rspamd for the tests (Debian package ``rspamd``).

``SharedRspamd().get()`` starts one ``rspamd -f`` the first time it is asked (a test module
keeps one instance at module level, so rspamd starts once per test module) and stops exactly
that process, by its PID, when the test process exits. Nothing of /etc/rspamd or
/var/lib/rspamd is used: the whole configuration is written into a fresh directory under /tmp.

The configuration (``CONFIG``) is made for tests:
  - one normal worker on 127.0.0.1:<free port>, and a proxy worker in milter mode on another
    (``milter_port``) whose upstream is that normal worker; no controller, no fuzzy storage;
  - no network: no DNS-based module is loaded, and rspamd's resolver points at a closed port
    on 127.0.0.1, so not even a stray lookup leaves the machine; no Redis;
  - only the Lua modules ``settings`` and ``milter_headers`` (the latter adds ``X-Spamd-Bar``
    and removes ``X-Spam``, also for 127.0.0.1), plus the test rules in ``TEST_LUA``;
  - GTUBE enabled for every client (``enable_test_patterns``: rspamd skips it for local
    addresses otherwise): ``XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-…*C.34X`` → action ``reject``,
    ``smtp_message`` "Gtube pattern";
  - a four-entry TLD list instead of the 9,600-entry public suffix list (which takes rspamd
    some 20 s to compile without Hyperscan): start-up takes about a second;
  - actions: greylist 4, add header 6, rewrite subject 10 (``[SPAM] %s``), reject 15.

Test rules (``TEST_LUA``), driven by the test message's own header fields:
  ``X-Test-Score: N``         symbol QPTX_TEST_SCORE with score N;
  ``X-Test-Action: A``        a pre-result forcing action A, with ``X-Test-Message`` as
                              rspamd's ``smtp_message``;
  ``X-Test-Echo: 1``          rspamd adds (milter ``add_headers``) ``X-Test-Envelope`` with the
                              envelope *as rspamd understood it*: ip, helo, hostname, from,
                              rcpt, qid, user, mta (MTA-Name) and settings (the profile name).

Settings profiles (``Settings-ID``):
  ``strict``   reject from 5, add header from 3, no greylist, no subject rewriting;
  ``lenient``  reject from 50, add header from 40, no greylist, no subject rewriting;
  ``tagged``   default thresholds; asks to add ``X-Profile: tagged`` and remove ``X-Drop-Me``.

rspamd is started as the ``_rspamd`` user (``-u _rspamd -g _rspamd``) when the tests run as
root, as the current user otherwise; through ``setpriv --pdeathsig TERM`` (util-linux) where
it exists, so that rspamd also ends if the test process is killed. Without the package the
tests that need it are skipped with the reason.
"""

import grp
import os
import pwd
import shutil
import tempfile
import time
import urllib.request

from twisted.trial.unittest import SkipTest

from tests.support.daemon import PrivateDaemon, spawn, wait_started
from tests.support.processes import free_port, release_port, reserve_port
from tests.support.shared import SharedDaemon

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

CONFIG = """\
options {{
  pidfile = "{dir}/rspamd.pid";
  filters = "{filters}";
  enable_test_patterns = true;
  disable_hyperscan = true;
  explicit_modules = ["settings"{explicit}];
  url_tld = "{dir}/tld.dat";
  local_addrs = [];
  dns {{
    nameserver = ["{nameserver}"];
    timeout = 0.2s;
    retransmits = 1;
  }}
  cache_file = "{dir}/db/symbols.cache";
  dynamic_conf = "{dir}/db/rspamd_dynamic";
  history_file = "{dir}/db/rspamd.history";
  hs_cache_dir = "{dir}/db/";
  stats_file = "{dir}/db/stats.ucl";
  control_socket = "{dir}/db/rspamd.sock mode=0600";
  tempdir = "{dir}/tmp";
}}
logging {{
  type = "file";
  filename = "{dir}/rspamd.log";
  level = "info";
}}
actions {{
  reject = 15;
  rewrite_subject = 10;
  add_header = 6;
  greylist = 4;
  subject = "[SPAM] %s";
}}
worker "normal" {{
  bind_socket = "127.0.0.1:{port}";
  count = 1;
  mime = true;
}}
worker "rspamd_proxy" {{
  bind_socket = "127.0.0.1:{milter_port}";
  count = 1;
  milter = yes;
  timeout = 30s;
  upstream "local" {{
    default = yes;
    hosts = "127.0.0.1:{port}";
  }}
}}
modules {{
  path = "${{PLUGINSDIR}}/settings.lua";
  path = "${{PLUGINSDIR}}/milter_headers.lua";{module_paths}
}}
lua = "{dir}/test.lua";
settings {{
  strict {{
    id = "strict";
    apply {{
      actions {{ reject = 5; "add header" = 3; greylist = null; "rewrite subject" = null; }}
    }}
  }}
  lenient {{
    id = "lenient";
    apply {{
      actions {{ reject = 50; "add header" = 40; greylist = null; "rewrite subject" = null; }}
    }}
  }}
  tagged {{
    id = "tagged";
    apply {{
      add_headers {{ "X-Profile" = "tagged"; }}
      remove_headers {{ "X-Drop-Me" = 0; }}
    }}
  }}
}}
milter_headers {{
  skip_local = false;
  skip_authenticated = false;
  use = ["x-spamd-bar"];
}}
"""

TEST_LUA = """\
rspamd_config.QPTX_TEST_SCORE = {
  callback = function(task)
    local h = task:get_header('X-Test-Score')
    local n = h and tonumber(h)
    if n then
      return true, n, h
    end
    return false
  end,
  score = 1.0,
  description = 'the score given in X-Test-Score (tests only)',
  group = 'qptx',
}

rspamd_config:register_symbol{
  name = 'QPTX_TEST_ACTION',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local action = task:get_header('X-Test-Action')
    if action then
      task:set_pre_result(action, task:get_header('X-Test-Message'), 'qptx')
    end
  end,
}

rspamd_config:register_symbol{
  name = 'QPTX_TEST_ECHO',
  type = 'postfilter',
  callback = function(task)
    if not task:get_header('X-Test-Echo') then
      return
    end
    local function s(v)
      if v == nil then return '-' end
      return tostring(v)
    end
    local from = task:get_from('smtp')
    local rcpts = {}
    for _, r in ipairs(task:get_recipients('smtp') or {}) do
      table.insert(rcpts, r.addr)
    end
    local value = string.format(
      'ip=%s; helo=%s; hostname=%s; from=%s; rcpt=%s; qid=%s; user=%s; mta=%s; settings=%s',
      s(task:get_from_ip()), s(task:get_helo()), s(task:get_hostname()),
      s(from and from[1] and from[1].addr), table.concat(rcpts, ','), s(task:get_queue_id()),
      s(task:get_user()), s(task:get_request_header('MTA-Name')),
      s(task:cache_get('settings_name')))
    task:set_milter_reply({add_headers = {['X-Test-Envelope'] = value}})
  end,
}
"""

#: no proxy from the environment for our loopback requests
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

TLD = "com\nnet\norg\nexample\n"


class Rspamd(PrivateDaemon):
    """A running private rspamd: ``url`` of its normal worker, ``milter_port`` of its milter
    proxy, its ``dir`` and ``log()``.
    ``stop()`` stops the main process by its PID (it stops its workers)."""

    log_files = ("rspamd.out", "rspamd.log")

    def __init__(self, directory, port, process, startup_seconds=None):
        super().__init__(directory, port, process, startup_seconds)
        self.url = "http://127.0.0.1:%d" % port


def _binary():
    for path in (shutil.which("rspamd"), "/usr/bin/rspamd", "/usr/sbin/rspamd"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def _lua_module(name):
    return os.path.exists("/usr/share/rspamd/plugins/%s.lua" % name)


def start_rspamd(timeout=60.0, nameserver=None, modules=(), extra_config=""):
    """Start a private rspamd; returns a :class:`Rspamd`. SkipTest if it is not installed.

    ``nameserver`` (``address:port``) replaces the closed port as rspamd's DNS server;
    ``modules`` are more modules to load (C ones such as ``dkim``, Lua ones such as ``arc``), configured
    by ``extra_config`` (appended to the config; ``{dir}`` in it is rspamd's directory).
    The caller stops it (``stop()``).
    """
    binary = _binary()
    if binary is None:
        raise SkipTest("rspamd is not installed (apt-get install rspamd; .ci/run does)")
    user_args, owner = [], None
    if os.geteuid() == 0:
        try:
            owner = (pwd.getpwnam("_rspamd").pw_uid, grp.getgrnam("_rspamd").gr_gid)
            user_args = ["-u", "_rspamd", "-g", "_rspamd"]
        except KeyError:
            user_args = ["-i"]     # no _rspamd user: run the workers as root (rspamd's -i)

    directory = tempfile.mkdtemp(prefix="qptx-rspamd-")
    port = reserve_port()
    milter_port = reserve_port()
    config = CONFIG.format(
        dir=directory, port=port, nameserver=nameserver or "127.0.0.1:%d" % free_port(),
        milter_port=milter_port, explicit="".join(', "%s"' % m for m in modules),
        filters=",".join(m for m in modules if not _lua_module(m)),
        module_paths="".join('\n  path = "${PLUGINSDIR}/%s.lua";' % m for m in modules
                             if _lua_module(m)))
    files = {"rspamd.conf": config + extra_config.replace("{dir}", directory),
             "test.lua": TEST_LUA, "tld.dat": TLD}
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text)
    for sub in ("db", "tmp"):
        os.mkdir(os.path.join(directory, sub))
    if owner is not None:
        for path in [directory] + [os.path.join(directory, p) for p in ("db", "tmp")]:
            os.chown(path, *owner)
    os.chmod(directory, 0o755)

    # setpriv (util-linux) makes the kernel send rspamd SIGTERM should the test process die
    # without its exit handlers (SIGKILL): no rspamd outlives the tests.
    setpriv = shutil.which("setpriv")
    guard = [setpriv, "--pdeathsig", "TERM"] if setpriv else []
    process, started = spawn(
        guard + [binary, "-f", "-c", os.path.join(directory, "rspamd.conf")] + user_args,
        directory, "rspamd.out")
    rspamd = Rspamd(directory, port, process)
    rspamd.milter_port = milter_port
    return wait_started(rspamd, "rspamd", lambda: _wait_ready(rspamd, timeout), started)


def _wait_ready(rspamd, timeout):
    """Wait until the normal worker answers ``/ping`` with ``pong``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rspamd.process.poll() is not None:
            raise RuntimeError("rspamd exited with status %s" % rspamd.process.returncode)
        try:
            with _OPENER.open(rspamd.url + "/ping", timeout=2) as response:
                if response.read().strip() == b"pong":
                    release_port(rspamd.port)           # all its sockets are bound now
                    release_port(rspamd.milter_port)
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("no answer on %s/ping within %.0f s" % (rspamd.url, timeout))


#: the rspamd of this test run: ``shared_rspamd()`` starts it at the first call, stops it at
#: exit; a start that failed is not tried again (every later call reports the same error)
shared_rspamd = SharedDaemon("rspamd", start_rspamd).get
