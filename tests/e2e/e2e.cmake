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
# It runs alone (RUN_SERIAL): it may call apt-get and it starts daemons.

if(Python3_FOUND)
  add_test(NAME e2e_postfix
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/run.py
            --backstopd $<TARGET_FILE:backstopd>)
  set_tests_properties(e2e_postfix PROPERTIES
    TIMEOUT 900
    RUN_SERIAL TRUE
    SKIP_RETURN_CODE 77
    LABELS "e2e")
else()
  message(WARNING "python3 not found: the e2e_postfix test is not defined")
endif()
