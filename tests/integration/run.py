"""tests/integration/run.py - gone: the suite is tests/integration/test_*.py
(/usr/bin/python3 -m pytest tests/integration --backstopd PATH).

Only tests/reliability/rel.py still imports policy_request from here; delete
this file when the reliability suites are on tests/support.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from support.policy import policy_request  # noqa: E402,F401
