"""Write the shapes test set as a folder of PNG images, each with its object mask beside it.

    python -m engines.cli.shapes_test_set DIR [--count 100] [--seed 77031]

Files are `test_00000_<class>.png` and `test_00000_<class>.mask.png` (0/255): the first `count`
images of `shapes.make_dataset(count, shapes.TEST_SEED)`, the set the shapes CNN's test
accuracy was measured on. Feed the folder to `python -m engines.audit DIR --model shapes_cnn`.
"""

from __future__ import annotations

import argparse

from engines.models import shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where to write the images (made if missing)")
    parser.add_argument("--count", type=int, default=100, help="number of images (default 100)")
    parser.add_argument("--seed", type=int, default=shapes.TEST_SEED,
                        help=f"generator seed (default {shapes.TEST_SEED}, the test set)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1; got {args.count}")
    paths = shapes.write_test_set(args.folder, args.count, args.seed)
    print(f"wrote {len(paths)} images with their masks to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
