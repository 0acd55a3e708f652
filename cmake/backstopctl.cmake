# cmake/backstopctl.cmake - backstopctl, the admin command line, and its tests
# (included by the top CMakeLists.txt when present).

# jansson reads postqueue -j and writes --json (Debian: libjansson-dev).
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)

# Everything of backstopctl but main(), so the unit test links the same code.
add_library(backstopctl_core STATIC
  src/backstopctl/ctl_redis.c
  src/backstopctl/ctl_util.c
  src/backstopctl/ctl_domain.c
  src/backstopctl/ctl_import.c
  src/backstopctl/ctl_ndr.c
  src/backstopctl/ctl_explain.c
  src/backstopctl/ctl_client.c
  src/backstopctl/ctl_check.c
  src/backstopctl/ctl_queue.c
  src/backstopctl/ctl_json.c
  src/backstopctl/ctl_rbl.c
)
target_include_directories(backstopctl_core PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src/backstopctl)
target_link_libraries(backstopctl_core PUBLIC backstop_common PkgConfig::DEPS PkgConfig::JANSSON resolv)

add_executable(backstopctl src/backstopctl/ctl_main.c)
target_link_libraries(backstopctl PRIVATE backstopctl_core)
install(TARGETS backstopctl RUNTIME DESTINATION bin)
# man/backstopctl.8 is installed by cmake/install.cmake, with the other pages.

# Pure parts: JSON reader, import line classifier, DNSBL names, formatting.
add_executable(test_ctl tests/ctl/test_ctl.c)
target_include_directories(test_ctl PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_ctl PRIVATE backstopctl_core)
add_test(NAME ctl_unit COMMAND test_ctl)

# The command against a private redis-server (and backstopd, dnsmasq):
# tests/ctl/test_*.py on pytest (cmake/pytest.cmake); a missing dnsmasq skips
# the rbl test, reported in pytest's summary.
backstop_add_pytest(NAME ctl PATHS ctl TIMEOUT 600)
