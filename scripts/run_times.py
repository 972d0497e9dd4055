"""How long the incremental runs took, from the run log beside their records (a study run in
pieces, interrupted and resumed, included).

    python scripts/run_times.py [data/.incremental/nodes.times.jsonl]

Prints each run (start, runner, workers, nodes run, wall time; a run that was killed ends at
its last node), the total wall time, and the nodes' seconds by kind (``train_classifier``
over every experiment and seed). A run's wall time includes any time it was stopped; the
time its process saw itself stopped (``kill -STOP``, Ctrl-Z: the run log's pauses) is given
beside it, and the wall time less it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cxr_augment.orchestration.run_log import time_summary, times_path

DEFAULT_LOG = times_path(Path("data") / ".incremental" / "nodes.json")  # the runners' default


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_LOG
    if not path.exists():
        print(f"{path}: no run log yet (an incremental run writes it)", file=sys.stderr)
        return 1
    try:
        s = time_summary(path)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    for r in s["runs"]:
        state = "" if r["ended"] else "  (killed, or still running: to its last node)"
        paused = f" ({r['paused_s'] / 3600:.2f} h stopped)" if r["paused_s"] else ""
        print(f"{r['start']}  {r.get('runner')} x{r.get('workers')}  env {r.get('env')}  "
              f"{r['nodes_run']}/{r.get('to_run')} nodes  {r['wall_s'] / 3600:.2f} h{paused}"
              f"{state}")  # fmt: skip
    print(f"\n{len(s['runs'])} runs, {s['wall_s'] / 3600:.2f} h of wall time, of which "
          f"{s['paused_s'] / 3600:.2f} h stopped: {(s['wall_s'] - s['paused_s']) / 3600:.2f} h "
          f"running; {s['node_seconds'] / 3600:.2f} node-hours")  # fmt: skip
    for kind, k in s["kinds"].items():
        print(f"  {kind:32s} {k['nodes']:5d} nodes  {k['seconds'] / 3600:7.2f} h")
    if s["unread_lines"]:
        print(f"\n{len(s['unread_lines'])} line(s) of {path} are not events and were skipped "
              f"(lines {', '.join(map(str, s['unread_lines'][:10]))}): a run killed while "
              "writing one leaves such a line")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
