"""`python -m target_server [flags]`: validate the options, then serve until SIGTERM/SIGINT.

Exit codes: 0 after a clean stop, 2 for a bad option (one line on stderr), 1 if the address cannot be bound.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from target_server.config_sources import config_from_sources
from target_server.options import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = config_from_sources(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as error:
        detail = error.problem if error.option == "arguments" else str(error)
        print(f"target_server: error: {detail}", file=sys.stderr)
        return 2
    if config.otel:  # before serving: a missing package or a bad OTEL_* variable is one line, exit 2
        from target_server.tracing import TracingError, start_tracing

        try:
            start_tracing(os.environ)
        except TracingError as error:
            print(f"target_server: error: {error}", file=sys.stderr)
            return 2
    # after validation: a bad flag should not pay for Flask's import
    from target_server.server import StatusPortError, serve

    try:
        serve(config)
    except StatusPortError as error:
        print(
            f"target_server: cannot listen on {config.host}:{config.status_port} (--status-port): "
            f"{error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    except OSError as error:
        print(
            f"target_server: cannot listen on {config.host}:{config.port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
