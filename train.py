#!/usr/bin/env python
"""Train an image classifier from URL lists or class folders: fast.ai lesson 2 as a command line.

    python train.py download mods.csv rockers.csv --dest data/brighton_seafront
    python train.py lr-find --data data/brighton_seafront
    python train.py fit --data data/brighton_seafront --lr 2e-3
    python train.py review --data data/brighton_seafront
    python train.py fit --data data/brighton_seafront --labels data/brighton_seafront/cleaned.csv
    python train.py demo

The command line lives in training/cli.py. Bad input ends in one sentence on stderr and exit
status 2.
"""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
