"""membench's engine: suites in, records out. Nothing here knows a particular workload."""

__version__ = "0.1.0"
