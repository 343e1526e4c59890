"""Benchmark harness: algorithms × tasks × seeds on one machine or a Ray cluster.

``suite`` (the YAML schema and the run plan), ``runner`` (one run as a ``tools/fit.py``
subprocess, resumable), ``executor`` (Ray scheduling and progress), ``results`` (evaluation
histories of the run folders), ``aggregate`` (rliable statistics), ``report`` (tables and
figures), ``cli`` (the ``tools/benchmark.py`` command line).
"""
