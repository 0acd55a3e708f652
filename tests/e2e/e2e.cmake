# tests/e2e/e2e.cmake - end-to-end tests with a real Postfix (included by the
# top CMakeLists.txt when present). pytest modules (cmake/pytest.cmake) on the
# postfix fixture of tests/e2e/conftest.py (tests/support/postfix.py); marked
# slow and postfix. Not root, or postfix/swaks/redis-server missing
# (scripts/deps installs them): skipped, and pytest says so ("N skipped").
#
#   e2e_postfix   test_postfix.py: two throw-away Postfix instances, two
#                 backstopds (inet and unix policy sockets) and one private
#                 redis-server; SMTP sessions with XCLIENT-set client
#                 addresses; asserts SMTP replies, maillog and backstopd logs.
#                 No system Postfix is started.
#
#   e2e_purge_queue
#                 test_purge_queue.py: "backstopctl purge-queue" on a real
#                 Postfix queue (one throw-away instance, everything on hold)
#                 holding a mix of bounces and normal mail, with a private
#                 redis-server; asserts exactly the bounces to NDR-denied
#                 domains are listed, then deleted, and nothing else is
#                 touched; and with empty_address_recipient set to an
#                 address (bounces@example.com, nulls@$mydomain), real mail
#                 from it that postqueue shows like a bounce is kept.
#
#   e2e_directory test_directory.py: one Postfix (smtputf8_enable = yes), one
#                 backstopd, one redis-server, backstopctl sync: every form of
#                 a protected domain Postfix takes (case, trailing dot, A- and
#                 U-label with SMTPUTF8, source route) refuses an unknown user
#                 550 5.1.1; a domain without users defers (4xx); 4 SMTP
#                 clients during a 20,000-user sync see the old or the new
#                 set, never a mix. About 20 s.
#
#   e2e_harvest   test_harvest.py: one Postfix, one backstopd with [harvest]
#                 threshold = 5/1m, one redis-server: a harvester's SMTP codes
#                 before (250 / 550 5.1.1) and during an attack tripped by
#                 probing through Postfix (the same 450 4.7.1 for a valid and an
#                 unknown user from a new client, 250 / 550 on the retry after
#                 retry_after, a known network unaffected), then backstopctl
#                 harvest end. About 10 s.
#
# They run alone (RUN_SERIAL): they start daemons as root.

backstop_add_pytest(NAME e2e_postfix PATHS e2e/test_postfix.py TIMEOUT 900)
backstop_add_pytest(NAME e2e_purge_queue PATHS e2e/test_purge_queue.py TIMEOUT 600)
backstop_add_pytest(NAME e2e_directory PATHS e2e/test_directory.py TIMEOUT 300)
backstop_add_pytest(NAME e2e_harvest PATHS e2e/test_harvest.py TIMEOUT 300)
set_tests_properties(e2e_postfix e2e_purge_queue e2e_directory e2e_harvest PROPERTIES RUN_SERIAL TRUE LABELS "e2e")
