"""Whether two runs wrote the same outputs (``cxr_augment.orchestration.compare``).

    python scripts/compare_outputs.py A/data B/data [--json OUT.json] [--list N]

For example the Kedro study in this checkout against the Dagster study in another one:
``python scripts/compare_outputs.py data ../dagster-study/data``. Prints how many files are
identical, identical but for the keys that identify their inputs (a store's fingerprint
counts its input files' modification times), different, and held by one run only, with the
first N of each list. Exits 1 when a file both hold differs.
"""

from __future__ import annotations

import argparse
import json
import sys

from cxr_augment.orchestration.compare import compare_outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json", help="write the whole comparison here")
    ap.add_argument("--list", type=int, default=10, help="files shown per list (default 10)")
    args = ap.parse_args(argv)
    try:
        res = compare_outputs(args.a, args.b)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    n = args.list
    print(f"identical: {len(res['identical'])} files")
    lists = [
        ("identical but for their inputs' identity", res["identical_but_inputs"]),
        ("different", res["different"]),
        (f"only in {args.a}", res["only_a"]),
        (f"only in {args.b}", res["only_b"]),
    ]
    for title, items in lists:
        print(f"{title}: {len(items)} files")
        for rel in list(items)[:n]:
            keys = items[rel] if isinstance(items, dict) else None
            print(f"  {rel}" + (f"  ({', '.join(keys)})" if keys else ""))
        if len(items) > n:
            print(f"  ... {len(items) - n} more")
    return 1 if res["different"] else 0


if __name__ == "__main__":
    sys.exit(main())
