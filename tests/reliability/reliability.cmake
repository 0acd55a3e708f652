# tests/reliability/reliability.cmake - reliability tests (included by the top
# CMakeLists.txt when present). Each is a pytest module (cmake/pytest.cmake:
# /usr/bin/python3 -m pytest) that starts its own redis-server /
# redis-server --sentinel processes on free loopback ports (never 6379 or
# 10040) and its own backstopd through the tests/support fixtures, which stop
# them by PID whatever happens. Every check prints "ok"/"FAIL" and every
# figure is printed and repeated in pytest's "measurements" summary.
# Timing-sensitive: they run alone (RUN_SERIAL). All are marked slow.
#
#   sentinel_failover  test_sentinel_failover.py: master + replica + 3
#                      sentinels; kill -9 the master under load; answers in
#                      time, writes follow the new master, the old one (back
#                      as a replica) gets nothing
#   mirror_failover    test_mirror_failover.py: [redis] mirror = yes across
#                      a Sentinel failover whose replica lags: stale answers
#                      meanwhile, then the new master's data, none of the old
#   soak_short         test_soak.py: 30,000 requests over 64 connections
#                      while Redis is SIGKILLed+restarted every 6 s and
#                      SIGSTOPped 2 s in between; deadlines, answers, RSS, fds,
#                      sanitizers (scripts/soak runs the long one: 1,000,000 / 256)
#   abuse              test_abuse.py: 1,000 slowloris + idle + malformed
#                      clients; limits, timers, counters, bounded memory,
#                      normal clients served
#   least_privilege    test_least_privilege.py: user/group drop, socket
#                      mode/group, [server] allow, minimal Redis ACL users
#                      (daemon and admins)
#
# A failure that is a known, reported backstopd bug prints XFAIL and makes
# the test xfail; run with BACKSTOP_REL_STRICT=1 to fail on those too.

set(_rel_tests
  sentinel_failover reliability/test_sentinel_failover.py
  mirror_failover reliability/test_mirror_failover.py
  soak_short reliability/test_soak.py
  abuse reliability/test_abuse.py
  least_privilege reliability/test_least_privilege.py)
while(_rel_tests)
  list(POP_FRONT _rel_tests _name _path)
  backstop_add_pytest(NAME ${_name} PATHS ${_path} TIMEOUT 150)
  set_tests_properties(${_name} PROPERTIES RUN_SERIAL TRUE LABELS "reliability")
endwhile()
