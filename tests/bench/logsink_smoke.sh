#!/bin/sh
# logsink_smoke.sh - ctest bench_logsink_smoke: bench_logsink counts lines.
#   logsink_smoke.sh LOGSINK
# Three lines sent with logger(1) to its socket must be counted as
# "lines=3 bytes=N" (N at least the three texts) at SIGTERM, exit 0, and
# the socket removed. A regular file at the path must be refused (exit 2).
set -u
sink=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/logsink-smoke.XXXXXX") || exit 1
sock=$dir/log.sock
pid=
fail() {
    echo "bench_logsink_smoke: FAIL: $*" >&2
    cat "$dir/sink.out" >&2 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
    exit 1
}
command -v logger >/dev/null || { echo "bench_logsink_smoke: no logger(1): skipped"; exit 77; }
"$sink" "$sock" >"$dir/sink.out" 2>&1 &
pid=$!
i=0
while [ ! -S "$sock" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "bench_logsink did not start"
    sleep 0.05
done
for n in 1 2 3; do
    logger -u "$sock" -t smoke "line number $n" || fail "logger exited $?"
done
sleep 0.2
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || fail "bench_logsink exited $rc after SIGTERM"
out=$(tail -n 1 "$dir/sink.out")
case $out in
lines=3\ bytes=*) ;;
*) fail "want lines=3: $out" ;;
esac
[ "${out#*bytes=}" -ge 39 ] || fail "want at least 3 x 13 bytes: $out"
[ -e "$sock" ] && fail "socket left behind"
: >"$dir/file"
"$sink" "$dir/file" >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] || fail "a regular file at the path: exit $rc, want 2"
rm -rf "$dir"
echo "bench_logsink_smoke: ok ($out)"
