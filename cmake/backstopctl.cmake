# cmake/backstopctl.cmake - backstopctl, the admin command line, and its tests
# (included by the top CMakeLists.txt when present).

# Everything of backstopctl but main(), so the unit test links the same code.
add_library(backstopctl_core STATIC
  src/ctl_redis.c
  src/ctl_util.c
  src/ctl_domain.c
  src/ctl_import.c
  src/ctl_ndr.c
  src/ctl_explain.c
  src/ctl_client.c
  src/ctl_check.c
  src/ctl_queue.c
  src/ctl_json.c
  src/ctl_rbl.c
)
target_link_libraries(backstopctl_core PUBLIC backstop PkgConfig::DEPS resolv)

add_executable(backstopctl src/ctl_main.c)
target_link_libraries(backstopctl PRIVATE backstopctl_core)
install(TARGETS backstopctl RUNTIME DESTINATION bin)
# man/backstopctl.8 is installed by cmake/install.cmake, with the other pages.

# Pure parts: JSON scanner, import line classifier, DNSBL names, formatting.
add_executable(test_ctl tests/ctl/test_ctl.c)
target_include_directories(test_ctl PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_ctl PRIVATE backstopctl_core)
add_test(NAME ctl_unit COMMAND test_ctl)

# The command against a private redis-server (and backstopd, dnsmasq):
# tests/ctl/test_*.py on pytest (cmake/pytest.cmake); a missing dnsmasq skips
# the rbl test, reported in pytest's summary.
backstop_add_pytest(NAME ctl PATHS ctl TIMEOUT 600)
