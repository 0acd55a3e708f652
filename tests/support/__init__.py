"""tests/support - the helpers every Python test suite shares.

    procs       free ports, private temporary directories, processes spawned
                and stopped by PID (SIGTERM, then SIGKILL; an atexit net)
    wait        poll(): call until truthy or fail with what was awaited
    replies     the policy answers the spec defines (DUNNO, USER_UNKNOWN(...))
    policy      the Postfix policy protocol: request builder, a client
    redis_server  a private redis-server; .client is a redis.Redis
    backstopd   backstopd with a rendered configuration, waited for, its log
    ctl         the backstopctl command runner
    metrics     the Prometheus endpoint: scrape(), metric()

The fixtures that own these objects live in tests/conftest.py.
"""
