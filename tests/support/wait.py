"""wait - poll a condition with a deadline (the suites run on a loaded machine)."""
import time


class WaitTimeout(AssertionError):
    """poll() gave up: the message says what was awaited and the last error."""


def poll(fn, timeout, interval=0.05, what="condition"):
    """Call fn until it returns something truthy and return that.

    An AssertionError from fn ends the wait at once (fn found a real
    failure); any other exception is retried until the deadline, and the
    last one is quoted in the WaitTimeout raised after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last_exc = None
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        if time.monotonic() >= deadline:
            extra = " (last error: %r)" % last_exc if last_exc else ""
            raise WaitTimeout("timed out after %.1fs waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)
