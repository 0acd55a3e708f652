# cmake/backstopctl.cmake - backstopctl, the admin command line, and its tests
# (included by the top CMakeLists.txt when present).

# jansson reads postqueue -j and writes --json (Debian: libjansson-dev).
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)

# Everything of backstopctl but main(), so the unit test links the same code.
add_library(backstopctl_core STATIC
  src/backstopctl/ctl_redis.c
  src/backstopctl/ctl_util.c
  src/backstopctl/ctl_domain.c
  src/backstopctl/ctl_mode.c
  src/backstopctl/ctl_import.c
  src/backstopctl/ctl_ndr.c
  src/backstopctl/ctl_explain.c
  src/backstopctl/ctl_client.c
  src/backstopctl/ctl_check.c
  src/backstopctl/ctl_queue.c
  src/backstopctl/ctl_json.c
  src/backstopctl/ctl_rbl.c
  src/backstopctl/ctl_sync.c
  src/backstopctl/ctl_harvest.c
  src/backstopctl/sync.c
  src/backstopctl/source_file.c
  src/backstopctl/source_command.c
  src/backstopctl/source_postfix.c
)
target_include_directories(backstopctl_core PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src/backstopctl)
target_link_libraries(backstopctl_core PUBLIC backstop_common PkgConfig::DEPS PkgConfig::JANSSON resolv)

# The LDAP directory reader (src/backstopctl/source_ldap.c) needs libldap (Debian:
# libldap-dev, which ships lber.pc and ldap.pc). Without it, or with
# -DBACKSTOP_LDAP=OFF, "type = ldap" sources still parse but sync reports
# them as failed ("built without LDAP"). When tests/ldap/ldap.cmake builds
# the reader as the library backstop_source_ldap (it is included after this
# file: the name is resolved when the build is generated), that is linked;
# else the file is compiled in here.
option(BACKSTOP_LDAP "Build the LDAP directory source for backstopctl sync (libldap)" ON)
if(BACKSTOP_LDAP AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/src/backstopctl/source_ldap.c)
  pkg_check_modules(LDAP IMPORTED_TARGET ldap lber)
  if(LDAP_FOUND)
    target_compile_definitions(backstopctl_core PRIVATE BACKSTOP_HAVE_LDAP=1)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/tests/ldap/ldap.cmake)
      target_link_libraries(backstopctl_core PUBLIC backstop_source_ldap)
    else()
      target_sources(backstopctl_core PRIVATE src/backstopctl/source_ldap.c)
      target_link_libraries(backstopctl_core PUBLIC PkgConfig::LDAP)
    endif()
  else()
    message(STATUS "libldap not found: backstopctl sync without LDAP sources")
  endif()
endif()

add_executable(backstopctl src/backstopctl/ctl_main.c)
target_link_libraries(backstopctl PRIVATE backstopctl_core)
install(TARGETS backstopctl RUNTIME DESTINATION bin)
# man/backstopctl.8 is installed by cmake/install.cmake, with the other pages.

# Pure parts: JSON reader, import line classifier, DNSBL names, formatting.
add_executable(test_ctl tests/ctl/test_ctl.c)
target_include_directories(test_ctl PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_ctl PRIVATE backstopctl_core)
add_test(NAME ctl_unit COMMAND test_ctl)

# The sync engine against fake sources, the file/command readers, and the
# [source NAME] / [sync] config.
add_executable(test_sync tests/unit/test_sync.c)
target_include_directories(test_sync PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/unit
                                             ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(test_sync PRIVATE backstopctl_core)
add_test(NAME unit_sync COMMAND test_sync WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/tests/unit)

# The command against a private redis-server (and backstopd, dnsmasq):
# tests/ctl/test_*.py on pytest (cmake/pytest.cmake); a missing dnsmasq skips
# the rbl test, reported in pytest's summary.
backstop_add_pytest(NAME ctl PATHS ctl TIMEOUT 600)
# backstopctl sync: tests/sync/test_*.py against real postmap/postconf
backstop_add_pytest(NAME ctl_sync PATHS sync TIMEOUT 600)
