"""Benchmark suite of airflow-provider-volteras: ``python -m benchmarks`` (``--quick`` for a smoke run).

Everything runs against the embedded simulator, started in its own process on 127.0.0.1. See
``benchmarks/RESULTS.md`` for the latest full run and ``benchmarks/run.py`` for what is measured.
"""
