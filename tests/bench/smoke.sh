#!/bin/sh
# smoke.sh - ctest bench_smoke: bench_loadgen against bench_nullserver.
#   smoke.sh NULLSERVER LOADGEN
# 1. 2,000 requests on 4 connections, --expect dunno: must exit 0, 0 errors.
# 2. The same load with --expect backstop must fail (the null server says
#    DUNNO to unknown users): proves a wrong answer is caught.
# 3. Open loop (--rate 2000 for 1 s on 4 connections): the server answers
#    in microseconds, so the requests sent are the offered rate's (1,400 to
#    2,600: Poisson), not the thousands a closed loop sends.
# 4. The null server must exit 0 on SIGTERM (its loop closed cleanly).
# Speed is not checked. Uses a unix socket in a private directory: no port.
set -u
null=$1
loadgen=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke.XXXXXX") || exit 1
sock=$dir/null.sock
"$null" -l "unix:$sock" >"$dir/null.out" 2>&1 &
pid=$!
fail() {
    echo "bench_smoke: FAIL: $*" >&2
    cat "$dir/null.out" >&2
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -rf "$dir"
    exit 1
}
i=0
while [ ! -S "$sock" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "null server did not start"
    sleep 0.05
done

out=$("$loadgen" -t "unix:$sock" -c 4 -n 2000 --expect dunno --label smoke) ||
    fail "loadgen --expect dunno exited $?: $out"
echo "$out"
case $out in
*" errors=0 failed=0 "*) ;;
*) fail "want errors=0 failed=0: $out" ;;
esac
case $out in
*" requests=2000 "*) ;;
*) fail "want requests=2000: $out" ;;
esac

if out=$("$loadgen" -t "unix:$sock" -c 4 -n 500 --expect backstop -q 2>/dev/null); then
    fail "loadgen --expect backstop against the null server passed: $out"
fi
case $out in
*" errors=0 "*) fail "wrong answers not counted: $out" ;;
esac

out=$("$loadgen" -t "unix:$sock" -c 4 -d 1 --rate 2000 --expect dunno -q) ||
    fail "loadgen --rate exited $?: $out"
n=$(printf '%s\n' "$out" | sed -n 's/.* requests=\([0-9]*\) .*/\1/p')
case $out in
*" errors=0 failed=0 "*" offered_rps=2000 "*) ;;
*) fail "--rate: want errors=0 failed=0 offered_rps=2000: $out" ;;
esac
[ "${n:-0}" -ge 1400 ] && [ "$n" -le 2600 ] || fail "--rate 2000 for 1 s sent ${n:-none} requests: $out"
echo "open loop: $n requests at --rate 2000 for 1 s"

kill -TERM "$pid"
wait "$pid"
rc=$?
[ $rc -eq 0 ] || fail "null server exited $rc after SIGTERM"
rm -rf "$dir"
echo "bench_smoke: ok"
