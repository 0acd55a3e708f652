# tests/fuzz/run_fuzzer.cmake - the fuzz_run_T ctest: fuzz a fresh copy of
# the seed corpus for a bounded time; fail on any crash, leak, timeout or OOM
#
#   cmake -DFUZZER=bin -DDICT=T.dict -DSEEDS=corpus/T -DWORK=dir -DSECONDS=n
#         [-DARGS=more;flags] -P run_fuzzer.cmake
#
# WORK is emptied first: WORK/corpus is what the fuzzer reads and grows,
# WORK/artifacts gets crash-*/leak-*/timeout-*/oom-* inputs, WORK/fuzz.log
# the whole libFuzzer output. Prints the exec count reached.
foreach(v FUZZER DICT SEEDS WORK SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${v}=... missing")
  endif()
endforeach()
get_filename_component(name "${FUZZER}" NAME)
string(REGEX REPLACE "^fuzz_" "" target "${name}")

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/corpus" "${WORK}/artifacts")
file(GLOB seeds "${SEEDS}/*")
file(COPY ${seeds} DESTINATION "${WORK}/corpus")

execute_process(
  COMMAND "${FUZZER}" "-dict=${DICT}" "-max_total_time=${SECONDS}" -rss_limit_mb=2048
          -timeout=10 -print_final_stats=1 "-artifact_prefix=${WORK}/artifacts/" ${ARGS}
          "${WORK}/corpus"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
file(WRITE "${WORK}/fuzz.log" "${out}")

set(runs "?")
if(out MATCHES "Done ([0-9]+) runs in ([0-9]+) second")
  set(runs "${CMAKE_MATCH_1} runs in ${CMAKE_MATCH_2} s")
elseif(out MATCHES "stat::number_of_executed_units: ([0-9]+)")
  set(runs "${CMAKE_MATCH_1} runs")
endif()
file(GLOB found "${WORK}/artifacts/*")
if(NOT rc EQUAL 0 OR found)
  message("${out}")
  message("${name}: FAILED (exit ${rc}) after ${runs}")
  foreach(f IN LISTS found)
    message("  input: ${f}\n  replay: fuzz_replay_${target} ${f}")
  endforeach()
  message(FATAL_ERROR "${name} failed: the input(s) above, the full log in ${WORK}/fuzz.log")
endif()
file(GLOB corpus "${WORK}/corpus/*")
list(LENGTH corpus ncorpus)
message("${name}: ${runs}, corpus ${ncorpus} files, no crash")
