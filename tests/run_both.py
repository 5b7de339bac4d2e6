"""`make test`: the whole suite as two pytest processes side by side, so it fits in 10 minutes on 2 cores.

The `load` lane (tests/conftest.py's LOAD_MODULES) runs one test at a time: runs whose verdict depends on
the CPU the target and Locust get. The other lane holds everything else, which mostly waits (namespaces,
subprocesses refusing bad input, the wheel's install, the browser) or is over in a moment. Each lane's
output is printed whole when both are done, then one line with the sums. Exit 0 only when both passed.

    .venv/bin/python tests/run_both.py [extra pytest arguments]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANES = (("load", "load"), ("the rest", "not load"))
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected)")


def main(extra: list[str]) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hammerlab-lanes-") as folder:
        logs = [Path(folder) / f"lane{i}.log" for i in range(len(LANES))]
        processes = []
        for (_, marks), log in zip(LANES, logs, strict=True):
            command = [sys.executable, "-m", "pytest", "-q", "-m", marks, "-p", "no:cacheprovider", *extra]
            with log.open("wb") as out:
                processes.append(subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
        codes = [process.wait() for process in processes]
        totals: dict[str, int] = {}
        for (name, marks), log, code in zip(LANES, logs, codes, strict=True):
            text = log.read_text(errors="replace")
            print(f"==== lane: {name} (-m '{marks}'), exit {code} ====")
            print(text.rstrip())
            last = text.strip().splitlines()[-1] if text.strip() else ""
            for count, kind in COUNTS.findall(last):
                key = "errors" if kind.startswith("error") else kind
                totals[key] = totals.get(key, 0) + int(count)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(f"both lanes: {minutes} min {seconds} s")
    failed = totals.get("failed", 0) + totals.get("errors", 0)
    print(f"{totals.get('passed', 0)} passed, {failed} failed, {totals.get('skipped', 0)} skipped")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
