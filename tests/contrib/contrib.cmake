# tests/contrib/contrib.cmake - contrib/grafana and contrib/prometheus (included
# by the top CMakeLists.txt): promtool check/test rules, the dashboard's shape,
# and every metric they name against a live backstopd (tests/contrib).
backstop_add_pytest(NAME contrib TIMEOUT 120 PATHS contrib)
