"""Write the broken drivers from the mistake table (see mistakes.py).

    python -m tests.conformance.broken.regenerate [--check] [--out DIR]

Run from the repository's root.  Nothing is written unless every mistake
applies to the current base drivers; `--check` writes nothing and exits 1 when
a file is out of date or a file has no row in the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .mistakes import BROKEN, MISTAKES, AnchorError

#: the files of the folder that are not broken drivers
NOT_DRIVERS = frozenset({"mistakes.py", "regenerate.py", "table.py", "__init__.py"})


def drivers() -> dict[str, str]:
    """Each broken driver's file name and text, from the table and the current base drivers."""
    made = {}
    for mistake in MISTAKES:
        try:
            made[f"{mistake.name}.py"] = mistake.render(mistake.base_path.read_text(
                encoding="utf-8"))
        except AnchorError as exc:
            raise AnchorError(f"mistake {mistake.name}: {exc}") from None
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.broken.regenerate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file is out of date")
    parser.add_argument("--out", type=Path, default=BROKEN, metavar="DIR",
                        help="folder to write (default: the folder of the table)")
    args = parser.parse_args(argv)
    try:
        made = drivers()
    except AnchorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stale = sorted(name for name, text in made.items()
                   if not (args.out / name).is_file()
                   or (args.out / name).read_text(encoding="utf-8") != text)
    strays = sorted(p.name for p in args.out.glob("*.py")
                    if p.name not in made and p.name not in NOT_DRIVERS)
    for name in strays:
        print(f"{args.out / name}: no row in the mistake table", file=sys.stderr)
    if args.check:
        for name in stale:
            print(f"{args.out / name}: out of date")
        return 1 if stale or strays else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(made[name], encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 1 if strays else 0


if __name__ == "__main__":
    sys.exit(main())
