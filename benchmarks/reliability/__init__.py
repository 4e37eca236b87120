"""Reliability, `python -m benchmarks.reliability`: faults and soaks against real services
(bench.py, tools.py), their report, and the integrations check.
"""
