"""DMARC's local-policy override by a trusted ARC sealer (RFC 7489 section 6.7, RFC 8617
section 7.2): a message that fails DMARC after a forwarder changed it (a mailing list's
subject tag, a footer) is not refused when its ARC chain validates and a sealer the operator
trusts recorded, in its ARC-Authentication-Results, that the message passed DMARC when it
reached that sealer.

A trusted sealer vouches for the message when its ARC-Authentication-Results field:

- has a ``dmarc`` result: it vouches only if that result is ``pass`` for the From domain
  (``header.from``, or none named); a ``dmarc=fail`` there, or a pass for another From
  domain, is never overridden; else
- has ``dkim=pass`` with ``header.d`` (or ``header.i``'s domain) aligned with the From
  domain, or ``spf=pass`` with ``smtp.mailfrom``'s domain aligned, under the policy's
  ``adkim``/``aspf``.

Nothing else counts: results of untrusted sealers, a chain that is not ``pass``.
"""

import re

from qpsmtpd_tx import cfws, dmarc_policy
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.spf import is_domain


def trusted_parser(lines):
    """A parser (for :meth:`Plugin.parsed_config`) of the trusted sealers file: a domain a
    line; a line that is not a domain name stops start-up naming the file and line."""
    found = set()
    for line in lines:
        name = line.text.strip().rstrip(".").lower()
        if not is_domain(name):
            raise PluginError("%s:%s: not a domain name: %r" % (line.path, line.lineno, name))
        found.add(name)
    return frozenset(found)


def parse_results(value):
    """The results of an (ARC-)Authentication-Results value: ``[(method, result,
    {ptype.property: value})]``, lower case but the values; ``i=N;`` and the authserv-id
    skipped. Unparseable pieces are left out."""
    text = cfws.without_comments(value)
    quoted = []

    def keep(match):
        quoted.append(match.group(1).replace('\\"', '"'))
        return "\0%d\0" % (len(quoted) - 1)

    text = cfws.quoted_strings(text, keep)
    pieces = [p.strip() for p in text.split(";")]
    if pieces and re.match(r"i\s*=\s*\d+$", pieces[0]):
        pieces = pieces[1:]
    results = []
    for piece in pieces[1:]:            # the first is the authserv-id
        words = piece.split()
        if not words or "=" not in words[0]:
            continue
        method, result = words[0].split("=", 1)
        props = {}
        for word in words[1:]:
            if "=" in word:
                key, val = word.split("=", 1)
                props[key.lower()] = re.sub(r"\0(\d+)\0", lambda m: quoted[int(m.group(1))],
                                            val)
        results.append((method.split("/")[0].lower(), result.lower(), props))
    return results


class Vouch:
    """Why a trusted sealer's results override the DMARC failure: ``domain`` (the sealer's
    d=), ``instance``, ``evidence`` (``dmarc=pass``, ``dkim=pass header.d=…``, …)."""

    def __init__(self, domain, instance, evidence):
        self.domain, self.instance, self.evidence = domain, instance, evidence

    def comment(self):
        """The text for the dmarc result's comment."""
        return "overridden by trusted ARC sealer %s i=%d: %s" % (
            self.domain, self.instance, self.evidence)


def vouching_sealer(checked, trusted, from_domain, record, psl):
    """``(vouch, why_not)``: the :class:`Vouch` of the newest trusted sealer of ``checked``
    (an :class:`arc_check.Checked`) that vouches for ``from_domain`` under ``record``, or
    None and the reason (for the log)."""
    verdict = checked.verdict
    if verdict.result != "pass":
        return None, "ARC chain %s%s" % (verdict.result, (
            " (%s)" % verdict.reason) if verdict.reason else "")
    chain = checked.chain
    sealers = []
    for instance, domain in _trusted_seals(chain, trusted):
        sealers.append(domain)
        aar = chain.sets[instance][b"arc-authentication-results"][1]
        evidence = _evidence(parse_results(aar.decode("utf-8", "replace")), from_domain,
                             record, psl)
        if evidence:
            return Vouch(domain, instance, evidence), None
    if sealers:
        return None, "trusted ARC sealer %s did not find it passing" % ", ".join(sealers)
    return None, "no trusted ARC sealer"


def unchecked_trusted_sealer(checked, trusted):
    """The newest trusted sealer of ``checked`` when its chain could not be checked now
    (``temperror``: a key lookup failed), else None: that sealer might still vouch, so a
    refusal must not be final."""
    if checked.verdict.result != "temperror":
        return None
    return next((domain for _, domain in _trusted_seals(checked.chain, trusted)), None)


def _trusted_seals(chain, trusted):
    """``(instance, sealer domain)`` of ``chain``'s seals by a ``trusted`` domain, newest
    first."""
    for instance in range(chain.count, 0, -1):
        seal = chain.seals.get(instance)
        if seal is not None and seal.domain in trusted:
            yield instance, seal.domain


def _evidence(results, from_domain, record, psl):
    from_domain = from_domain.lower()
    dmarc = [(r, p.get("header.from", from_domain).lower().rstrip("."))
             for m, r, p in results if m == "dmarc"]
    if dmarc:
        return "dmarc=pass" if all(r == ("pass", from_domain) for r in dmarc) else None
    for method, result, props in results:
        if result != "pass":
            continue
        if method == "dkim":
            domain = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
            if domain and dmarc_policy.aligned(domain, from_domain, record.adkim, psl):
                return "dkim=pass header.d=%s" % domain
        elif method == "spf":
            domain = props.get("smtp.mailfrom", "").rpartition("@")[2]
            if domain and dmarc_policy.aligned(domain, from_domain, record.aspf, psl):
                return "spf=pass smtp.mailfrom=%s" % domain
    return None
