"""Loaded by pytest before any test module: patch the standard library for gevent, first and once.

Locust monkey-patches everything when it is imported, and patching after `ssl` was imported (by
requests, say) recurses. Patching here, before any import, gives every test the world the load
generator runs in.
"""

from gevent import monkey

monkey.patch_all()
