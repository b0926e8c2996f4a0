"""The scan engine: pure Python and NumPy, no Django, Celery, Redis or Channels.

It takes bars and plain configuration, reports progress through a callback and returns
plain results, so it can be tested and benchmarked without a database or a broker.
"""

ENGINE_VERSION = "1.0.0"
