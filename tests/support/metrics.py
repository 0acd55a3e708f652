"""metrics - read backstopd's Prometheus endpoint ([metrics] listen)."""
import re
import urllib.request


def scrape(port, path="/metrics"):
    """(status, Content-Type, body) of one GET on 127.0.0.1:port."""
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def metric(port, name):
    """The value of one plain (unlabelled) counter, or None."""
    m = re.search(r"^%s (\d+)$" % re.escape(name), scrape(port)[2], re.M)
    return int(m.group(1)) if m else None
