"""Driven adapters: the ports implemented with real technologies, each behind an extra.

``memory`` needs nothing beyond the standard library and is what tests (and the embedded
profile's rate limiter and URL cache) use; the others need their extra installed.
"""
