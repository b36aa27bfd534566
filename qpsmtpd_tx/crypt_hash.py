"""crypt(3) hashes (``$1$`` MD5, ``$5$``/``$6$`` SHA-2, yescrypt, DES), as vpopmail and
/etc/shadow store them.

Python's ``crypt`` module is deprecated since 3.11 and gone in 3.13; there the same module
comes from PyPI's ``crypt-r`` (a maintained copy, declared in setup.cfg for 3.13 and later).
Without either, no crypt hash can be checked, and :func:`crypt_matches` says no.
"""

import hmac
import warnings

_module = None


def _crypt_module():
    global _module
    if _module is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import crypt as module
            except ImportError:
                try:
                    import crypt_r as module
                except ImportError:
                    module = False
        _module = module
    return _module or None


def available():
    """True if crypt hashes can be computed here."""
    return _crypt_module() is not None


def crypt(clear, salt):
    """The crypt(3) hash of ``clear`` with ``salt`` (a whole hash may be given as the salt);
    None if this Python cannot compute it."""
    module = _crypt_module()
    return None if module is None else module.crypt(clear, salt)


def crypt_matches(clear, hashed):
    """True if ``clear`` hashes to ``hashed`` (compared in constant time)."""
    computed = crypt(clear, hashed)
    return computed is not None and hmac.compare_digest(computed, hashed)
