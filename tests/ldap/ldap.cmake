# tests/ldap/ldap.cmake - the LDAP / Active Directory directory source
# (src/backstopctl/source_ldap.c), its driver and its tests. Included by the top
# CMakeLists.txt when present.
#
#   backstop_source_ldap  bs_source_ldap_read, linked with libldap + liblber
#                         (Debian libldap-dev ships ldap.pc and lber.pc)
#   ldap_dump             test driver: a source from options, every address
#                         emitted printed (tests/ldap/ldap_dump.c)
#   ldap_unit             the pure parts: address types, range options
#   ldap_slapd            pytest suite against a private slapd (50,000
#                         users); its tests skip themselves without slapd

pkg_check_modules(LDAP IMPORTED_TARGET ldap lber)
if(NOT LDAP_FOUND)
  message(STATUS "libldap not found: no LDAP source, no tests/ldap")
  return()
endif()

add_library(backstop_source_ldap STATIC src/backstopctl/source_ldap.c)
target_link_libraries(backstop_source_ldap PUBLIC backstop_common PkgConfig::LDAP)

add_executable(ldap_dump tests/ldap/ldap_dump.c)
target_link_libraries(ldap_dump PRIVATE backstop_source_ldap)

# source_ldap.c's static helpers, compiled into the test itself.
add_executable(test_ldap_unit tests/ldap/test_ldap_unit.c)
target_include_directories(test_ldap_unit PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_ldap_unit PRIVATE backstop_common PkgConfig::LDAP)
add_test(NAME ldap_unit COMMAND test_ldap_unit)

find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  # With the sync engine in the tree, test_sync_ldap.py also drives backstopctl sync.
  set(LDAP_SYNC_ARG "")
  if(TARGET backstopctl AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/src/backstopctl/ctl_sync.c)
    set(LDAP_SYNC_ARG --backstopctl=$<TARGET_FILE:backstopctl>)
  endif()
  add_test(NAME ldap_slapd
    COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider ${CMAKE_CURRENT_SOURCE_DIR}/tests/ldap
            --ldap-dump=$<TARGET_FILE:ldap_dump> ${LDAP_SYNC_ARG})
  set_tests_properties(ldap_slapd PROPERTIES TIMEOUT 600)
endif()
