"""replies - the policy answers the spec defines.

Postfix itself puts "<rcpt>: Recipient address rejected: " before a policy
reply's text, so an action carries the short text only; the full text is in
backstopd's log line and in the WARN replies of report mode.
"""
import re

PREFIX = "backstop:"
DUNNO = "action=DUNNO\n\n"
BLOCKED_TEXT = "450 4.7.1 Too many invalid recipients from your host, try again later"
BLOCKED = "action=" + BLOCKED_TEXT + "\n\n"
FALLBACK_DEFER = "action=DEFER_IF_PERMIT Recipient verification temporarily unavailable\n\n"
REPLY_RE = re.compile(rb"^action=[\x20-\x7e]{1,512}\n\n$")

USER_UNKNOWN_TEXT = "550 5.1.1 User unknown"
NDR_DENY_TEXT = "550 5.7.1 Delivery status notifications to this domain are not accepted"
NDR_LIMIT_TEXT = "550 5.7.1 Too many delivery status notifications to this domain"


def action(text):
    return "action=" + text + "\n\n"


def full_text(short, rcpt):
    """What the SMTP client sees (and WARN replies and log lines carry)."""
    return "%s <%s>: Recipient address rejected: %s" % (short[:9], rcpt, short[10:])


def USER_UNKNOWN(rcpt):
    return action(USER_UNKNOWN_TEXT)


def NDR_DENY(rcpt):
    return action(NDR_DENY_TEXT)


def NDR_LIMIT(rcpt):
    return action(NDR_LIMIT_TEXT)


def WARN(verb, short, rcpt):
    """The report-mode answer: "WARN would reject: 550 5.1.1 <rcpt>: ..."."""
    return action("WARN would %s: %s" % (verb, full_text(short, rcpt)))
