"""The comparison runner: one command that runs every client class against the same scenario, one after
another, and writes one readable answer (summary.csv, summary.md, report.html).

It drives Locust as a subprocess, the way a user would, and reads only the files Locust and the
Hammerlab sampler write. It lives outside `locustfiles/` because `locust -f locustfiles` imports every
`.py` file under that folder.

    python -m comparison --scenario cliff
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""Where the lab's top-level packages live: the checkout, or site-packages once installed. Locust is
given `ROOT / "locustfiles"` by absolute path, so nothing depends on the current folder."""
