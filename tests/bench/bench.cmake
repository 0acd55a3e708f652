# tests/bench/bench.cmake - the benchmark tools (run by scripts/bench) and
# their smoke test. Included by the top CMakeLists.txt when present.
#
#   bench_loadgen      Postfix-shaped load, every reply checked (loadgen.c)
#   bench_nullserver   DUNNO to everything: the protocol's ceiling (nullserver.c)
#   bench_logsink      the cheapest syslog daemon: counts datagrams (logsink.c)
#   bench_alloccount   LD_PRELOAD allocation counter (alloccount.c); not in
#                      sanitizer builds, whose allocator it would fight
#
# bench_smoke runs the load generator against the null server for about a
# second and checks that every reply was right; it asserts nothing about speed.
# bench_logsink_smoke sends the sink three lines with logger(1) and checks its
# count.

add_executable(bench_loadgen tests/bench/loadgen.c)
target_link_libraries(bench_loadgen PRIVATE backstop PkgConfig::DEPS m)

add_executable(bench_nullserver tests/bench/nullserver.c)
target_link_libraries(bench_nullserver PRIVATE backstop PkgConfig::DEPS)

add_executable(bench_logsink tests/bench/logsink.c)

if(NOT BACKSTOP_SANITIZE)
  add_library(bench_alloccount MODULE tests/bench/alloccount.c)
  set_target_properties(bench_alloccount PROPERTIES PREFIX "")
endif()

add_test(NAME bench_smoke
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/bench/smoke.sh
          $<TARGET_FILE:bench_nullserver> $<TARGET_FILE:bench_loadgen>)
set_tests_properties(bench_smoke PROPERTIES TIMEOUT 60)

add_test(NAME bench_logsink_smoke
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/bench/logsink_smoke.sh
          $<TARGET_FILE:bench_logsink>)
set_tests_properties(bench_logsink_smoke PROPERTIES TIMEOUT 30 SKIP_RETURN_CODE 77)
