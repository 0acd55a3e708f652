# tests/fuzz/fuzz.cmake - fuzz targets (included by the top CMakeLists.txt)
#
# For each target T in proto addr config reply (tests/fuzz/fuzz_T.c, with
# tests/fuzz/T.dict and the seed corpus tests/fuzz/corpus/T):
#
#   fuzz_replay_T  always: fuzz_T.c + replay.c, built with the normal flags
#                  (any compiler, the ASan/UBSan test build included) and
#                  linked with backstop_common. ctest fuzz_replay_T replays the corpus.
#   fuzz_T         only with -DBACKSTOP_FUZZ=ON and clang: the libFuzzer
#                  binary. ctest fuzz_run_T fuzzes a fresh copy of the corpus
#                  (in the build dir, never the source tree) for
#                  BACKSTOP_FUZZ_SECONDS and fails on any crash, leak,
#                  timeout or out-of-memory. `--target fuzz` builds them all.
#
# libFuzzer wants every instrumented object built with
# -fsanitize=fuzzer-no-link: the fuzz targets link backstop_fuzz, a copy of
# the backstop_common library (every parser the targets reach is in
# src/common) built from the same sources with those flags, so
# backstop_common itself and everything else in the build dir stay as they are.
# scripts/fuzz configures build/fuzz this way and runs the targets longer.

set(BACKSTOP_FUZZ_TARGETS proto addr config reply)
set(BACKSTOP_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

foreach(t IN LISTS BACKSTOP_FUZZ_TARGETS)
  add_executable(fuzz_replay_${t} ${BACKSTOP_FUZZ_DIR}/fuzz_${t}.c ${BACKSTOP_FUZZ_DIR}/replay.c)
  target_link_libraries(fuzz_replay_${t} PRIVATE backstop_common)
  add_test(NAME fuzz_replay_${t}
           COMMAND fuzz_replay_${t} ${BACKSTOP_FUZZ_DIR}/corpus/${t})
  set_tests_properties(fuzz_replay_${t} PROPERTIES TIMEOUT 300)
endforeach()
# the parser's portable scan (BS_PROTO_PORTABLE: what CPUs without SSE2 build)
# against the same model and corpus
add_executable(fuzz_replay_proto_portable ${BACKSTOP_FUZZ_DIR}/fuzz_proto.c ${BACKSTOP_FUZZ_DIR}/replay.c
                                          ${CMAKE_CURRENT_SOURCE_DIR}/src/common/proto.c)
target_compile_definitions(fuzz_replay_proto_portable PRIVATE BS_PROTO_PORTABLE)
target_link_libraries(fuzz_replay_proto_portable PRIVATE backstop_common)
add_test(NAME fuzz_replay_proto_portable COMMAND fuzz_replay_proto_portable ${BACKSTOP_FUZZ_DIR}/corpus/proto)
set_tests_properties(fuzz_replay_proto_portable PROPERTIES TIMEOUT 300)

option(BACKSTOP_FUZZ "Build the libFuzzer targets fuzz_* and the fuzz_run_* tests (clang only)" OFF)
set(BACKSTOP_FUZZ_SECONDS 20 CACHE STRING "How long each fuzz_run_* test fuzzes, in seconds")

if(BACKSTOP_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "BACKSTOP_FUZZ=ON needs clang (libFuzzer), not ${CMAKE_C_COMPILER_ID}: "
                        "configure a separate build dir with CC=clang (scripts/fuzz does)")
  endif()
  set(_fuzz_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined
                  -fno-omit-frame-pointer -g -O1)

  get_target_property(_fuzz_srcs backstop_common SOURCES)
  add_library(backstop_fuzz STATIC EXCLUDE_FROM_ALL ${_fuzz_srcs})
  foreach(p INCLUDE_DIRECTORIES COMPILE_DEFINITIONS COMPILE_OPTIONS LINK_LIBRARIES
            INTERFACE_INCLUDE_DIRECTORIES INTERFACE_COMPILE_DEFINITIONS INTERFACE_LINK_LIBRARIES)
    get_target_property(_v backstop_common ${p})
    if(_v)
      set_property(TARGET backstop_fuzz PROPERTY ${p} "${_v}")
    endif()
  endforeach()
  target_compile_options(backstop_fuzz PRIVATE -fsanitize=fuzzer-no-link ${_fuzz_flags})

  # extra libFuzzer flags per target (proto: room past BS_PROTO_MAX_REQUEST)
  set(_fuzz_args_proto -max_len=20000)

  add_custom_target(fuzz)
  foreach(t IN LISTS BACKSTOP_FUZZ_TARGETS)
    add_executable(fuzz_${t} ${BACKSTOP_FUZZ_DIR}/fuzz_${t}.c)
    target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer ${_fuzz_flags})
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz_${t} PRIVATE backstop_fuzz)
    add_dependencies(fuzz fuzz_${t})

    add_test(NAME fuzz_run_${t}
             COMMAND ${CMAKE_COMMAND}
                     -DFUZZER=$<TARGET_FILE:fuzz_${t}>
                     -DDICT=${BACKSTOP_FUZZ_DIR}/${t}.dict
                     -DSEEDS=${BACKSTOP_FUZZ_DIR}/corpus/${t}
                     -DWORK=${CMAKE_BINARY_DIR}/fuzz-run/${t}
                     -DSECONDS=${BACKSTOP_FUZZ_SECONDS}
                     "-DARGS=${_fuzz_args_${t}}"
                     -P ${BACKSTOP_FUZZ_DIR}/run_fuzzer.cmake)
    math(EXPR _fuzz_timeout "${BACKSTOP_FUZZ_SECONDS} + 120")
    set_tests_properties(fuzz_run_${t} PROPERTIES TIMEOUT ${_fuzz_timeout})
  endforeach()
endif()
