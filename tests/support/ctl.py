"""ctl - run backstopctl and keep what it said.

Ctl(binary, config).run(*args, stdin=, config=) returns a Result (rc, out,
err, seconds); Result.expect(rc, out=..., err=..., not_out=...) asserts the
exit status and that each string appears (or not) in stdout/stderr, and
that no sanitizer report is in stderr. Result.json(rc) checks a --json
run (exit rc, one JSON object on one line) and returns the object;
fields(doc, want) checks some of its keys.
"""
import json
import subprocess
import time

SANITIZER_MARKS = ("Sanitizer", "runtime error")


def _strings(x):
    return [x] if isinstance(x, str) else list(x)


class Result:
    def __init__(self, args, proc, seconds):
        self.args = args
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.seconds = seconds

    def __repr__(self):
        return "$ backstopctl %s\n[rc=%d]\nstdout: %s\nstderr: %s" % (
            " ".join(self.args), self.rc, self.out, self.err)

    def expect(self, rc, out=(), err=(), not_out=(), what=""):
        """what: a label for the failure message (the command is quoted anyway)."""
        if what:
            return self._expect(rc, out, err, not_out, what + ": ")
        return self._expect(rc, out, err, not_out, "")

    def _expect(self, rc, out, err, not_out, label):
        assert self.rc == rc, "%sexit %d, wanted %d\n%r" % (label, self.rc, rc, self)
        for s in _strings(out):
            assert s in self.out, "stdout lacks %r\n%r" % (s, self)
        for s in _strings(err):
            assert s in self.err, "stderr lacks %r\n%r" % (s, self)
        for s in _strings(not_out):
            assert s not in self.out, "stdout has %r\n%r" % (s, self)
        assert not any(m in self.err for m in SANITIZER_MARKS), "sanitizer report\n%r" % self
        return self


    def json(self, rc, what=""):
        """A --json run: exit rc, stdout one line holding one JSON object;
        the parsed object."""
        self.expect(rc, what=what)
        assert self.out.count("\n") == 1 and self.out.endswith("\n"), "%s: one line\n%r" % (what, self)
        try:
            doc = json.loads(self.out)
        except ValueError as e:
            raise AssertionError("%s: not JSON (%s)\n%r" % (what, e, self))
        assert isinstance(doc, dict), "%s: not an object\n%r" % (what, self)
        return doc


def fields(doc, want, what=""):
    """Every key of want is in doc with that value; a type as the value:
    of that type (bool does not count as int)."""
    for k, v in want.items():
        got = doc.get(k, KeyError)
        if isinstance(v, type):
            ok = isinstance(got, v) and not (v is int and isinstance(got, bool))
        else:
            ok = got == v
        assert ok, "%s: %s = %r, wanted %r\n%r" % (what, k, got, v, doc)


class Ctl:
    def __init__(self, binary, config=None):
        self.binary = binary
        self.config = config
        self.last = None

    def run(self, *args, stdin=None, config=None, timeout=120):
        argv = [self.binary] + (["-c", config or self.config] if (config or self.config) else [])
        t0 = time.monotonic()
        p = subprocess.run(argv + list(args), input=stdin, capture_output=True, text=True,
                           timeout=timeout)
        self.last = Result(args, p, time.monotonic() - t0)
        return self.last

    __call__ = run
