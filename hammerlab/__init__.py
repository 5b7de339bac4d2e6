"""Hammerlab, installed: the `hammerlab` command (hammerlab/cli.py) and the one place the version lives.

The lab's code stays in its own top-level packages (target_server, mitigations, locust_plugin,
locustfiles, comparison); this package only ties them into one command.
"""

__version__ = "0.1.0"
