# cmake/pytest.cmake - ctest entries that run a pytest suite under tests/.
#
#   backstop_add_pytest(NAME <ctest name> PATHS <dir or file>... [ARGS <pytest args>...]
#                       [TIMEOUT <s>])
#
# Runs `${BACKSTOP_PYTEST_PYTHON} -m pytest PATHS --backstopd ... --backstopctl ...
# ARGS` (the Debian interpreter: python3-pytest and python3-redis live there,
# not in a pyenv first on PATH). pytest exits 5 when nothing was collected:
# that fails; skipped tests are reported by pytest itself ("N skipped").
set(BACKSTOP_PYTEST_PYTHON /usr/bin/python3 CACHE FILEPATH "python3 with pytest and redis-py")

function(backstop_add_pytest)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "PATHS;ARGS" ${ARGN})
  set(paths)
  foreach(p ${T_PATHS})
    list(APPEND paths ${CMAKE_SOURCE_DIR}/tests/${p})
  endforeach()
  add_test(NAME ${T_NAME}
    COMMAND ${BACKSTOP_PYTEST_PYTHON} -m pytest ${paths}
            --backstopd $<TARGET_FILE:backstopd> --backstopctl $<TARGET_FILE:backstopctl> ${T_ARGS})
  if(T_TIMEOUT)
    set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT})
  endif()
endfunction()
