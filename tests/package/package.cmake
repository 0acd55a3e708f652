# tests/package/package.cmake - the Debian package test (included by the top
# CMakeLists.txt): tests/package/test_package.py builds the package from a
# copy of the tree, checks it, installs, runs and purges it. pytest reports
# it skipped without dpkg-buildpackage (or, for the install step, root).
# Serial: dpkg -i/--purge change the host; the build wants both cores.
backstop_add_pytest(NAME package TIMEOUT 900 PATHS package)
set_tests_properties(package PROPERTIES RUN_SERIAL TRUE)
