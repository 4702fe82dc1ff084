#!/usr/bin/env python3
"""Compare fine-tuning strategies on one data set: best val accuracy, trainable parameters, seconds per epoch.

Runs `cnntool finetune --compare all` (every strategy: full, linear, bn, last-k, gradual) with the same
data, weights, head, seed and schedule; every other finetune option passes through. Writes one run per
strategy under OUT/<strategy>, plus OUT/strategies.csv, OUT/strategies.json and OUT/curves.png
(validation accuracy and training loss per epoch, all strategies overlaid).

    python scripts/finetune_strategies.py --weights runs/train --data path/to/folder --epochs 5
    python scripts/finetune_strategies.py --model tv:resnet18 --weights imagenet --data imagenette \\
        --img-size 160 --compare full,linear,gradual --unfreeze-every 2
"""

import sys

from cnntool.cli.main import app


def main(argv: list[str]) -> None:
    if not any(a == "--compare" or a.startswith("--compare=") for a in argv):
        argv = ["--compare", "all", *argv]
    app(["finetune", *argv], prog_name="finetune_strategies.py")


if __name__ == "__main__":
    main(sys.argv[1:])
