# tests/e2e/e2e.cmake - end-to-end tests with a real Postfix (included by the
# top CMakeLists.txt when present).
#
#   e2e_postfix   tests/e2e/run.py: two throw-away Postfix instances, two
#                 backstopds (inet and unix policy sockets) and one private
#                 redis-server; SMTP sessions with XCLIENT-set client
#                 addresses; asserts SMTP replies, maillog and backstopd logs.
#                 Installs postfix, swaks, redis-server/redis-tools when missing
#                 and running as root (no system Postfix is started); exits 77
#                 (skipped, loudly) when not root.
#
#   e2e_purge_queue
#                 tests/e2e/purge_queue.py: "backstopctl purge-queue" on a real
#                 Postfix queue (one throw-away instance, everything on hold)
#                 holding a mix of bounces and normal mail, with a private
#                 redis-server; asserts exactly the bounces to NDR-denied
#                 domains are listed, then deleted, and nothing else is
#                 touched. Same installs and exit 77 convention as e2e_postfix.
#
# They run alone (RUN_SERIAL): they may call apt-get and they start daemons.

if(Python3_FOUND)
  add_test(NAME e2e_postfix
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/run.py
            --backstopd $<TARGET_FILE:backstopd>)
  set_tests_properties(e2e_postfix PROPERTIES
    TIMEOUT 900
    RUN_SERIAL TRUE
    SKIP_RETURN_CODE 77
    LABELS "e2e")
  if(TARGET backstopctl)
    add_test(NAME e2e_purge_queue
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/purge_queue.py
              --backstopctl $<TARGET_FILE:backstopctl>)
    set_tests_properties(e2e_purge_queue PROPERTIES
      TIMEOUT 600
      RUN_SERIAL TRUE
      SKIP_RETURN_CODE 77
      LABELS "e2e")
  endif()
else()
  message(WARNING "python3 not found: the e2e tests are not defined")
endif()
