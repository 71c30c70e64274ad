"""Write the option reference, docs/options.md, from the headers and inline comments of the YAML files in conf/
(runner.catalogue reads them; no Hydra, no torch, no training):

    python docs/make_options.py           # write docs/options.md
    python docs/make_options.py --check   # exit 1 when docs/options.md differs from what it would write

Edit the comments in conf/, never the page: the tests fail while the two disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "options.md"


def main(arguments: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare docs/options.md with what would be written")
    options = parser.parse_args(arguments)
    # Run as a script from anywhere, with or without the project installed: the runner package is beside docs/.
    sys.path.insert(0, str(ROOT))
    from runner.catalogue import render_markdown

    page = render_markdown()
    shown = PAGE.relative_to(ROOT) if PAGE.is_relative_to(ROOT) else PAGE
    if options.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{shown} is out of date with conf/: run python docs/make_options.py", file=sys.stderr)
            return 1
        print(f"{shown} is up to date.")
        return 0
    PAGE.write_text(page)
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
