"""A spare study process: ``python -m gentune.service.scheduling.spare WORKER_ID``.

The worker keeps one started so that the next study it claims starts at once. It goes to idle
CPU priority before anything else (see ``priority``), then does the runner's imports and
connections; the study id comes on stdin, read on a thread of its own so that the process is
back to normal priority the moment the id comes, even while it is still importing.
"""

from __future__ import annotations

import sys
import threading

from gentune.service.scheduling import priority


class HandOver:
    """The study id the worker sends on stdin (None when it closes stdin without one)."""

    def __init__(self, idle: bool) -> None:
        self.study_id: int | None = None
        self.came = threading.Event()
        self.idle = idle
        threading.Thread(target=self._read, name="gentune-handover", daemon=True).start()

    def _read(self) -> None:
        line = sys.stdin.readline().strip()
        if self.idle:
            priority.back_to_normal()
        self.study_id = int(line) if line.isdigit() else None
        self.came.set()

    def wait(self) -> int | None:
        self.came.wait()
        return self.study_id


def main(argv: list[str] | None = None) -> int:
    hand_over = HandOver(priority.go_idle())
    from gentune.service.scheduling import runner  # the heavy imports, at idle priority

    return runner.main(argv, hand_over.wait)


if __name__ == "__main__":
    sys.exit(main())
