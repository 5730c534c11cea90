"""
Prometheus metrics of every mmo process: what each part counts and
measures (L{mmo.metrics.registry}, one module that names every metric) and
the C{/metrics} listener that serves them (L{mmo.metrics.listener}).

C{docs/metrics.md} lists every metric and the config.
"""
