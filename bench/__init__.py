"""Benchmarks (``make bench``): throughput, latency, quality and store search at scale."""
