"""HammerClient in a process that yields to gevent for 1.5 s at exit, after Locust has closed its CSV files.

    locust -f tests/late_exit_locustfile.py --headless --csv PREFIX ... HammerClient

Locust 2.47 yields there too, for less time: with `--processes` its exit hook waits for the workers with a
gevent sleep. Locust's CSV writer greenlet wakes once a second, so a 1.5 s yield wakes it every time.
"""

import atexit

import gevent

from locustfiles.clients import HammerClient  # noqa: F401  (the class the test runs)

YIELDED = "late_exit_locustfile: yielded 1.5 s after Locust closed its files"


def _yield_late() -> None:
    gevent.sleep(1.5)
    print(YIELDED, flush=True)


# Registered at import, before Locust registers its own exit hooks, so it runs after them (LIFO).
atexit.register(_yield_late)
