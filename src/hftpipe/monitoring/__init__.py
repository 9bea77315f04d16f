"""Monitoring: drift against the training reference, Prometheus configuration and rules, dashboards, logs.

``drift`` is pure domain code (numpy only) used by training (to save the reference) and by the monitor;
``prometheus`` and ``dashboards`` are edges that write files and start Debian's ``prometheus``.
"""
