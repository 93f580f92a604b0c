#!/usr/bin/env python
"""Train an image classifier: fast.ai lesson 2 as a command line (`python train.py --help`).

The command line lives in training/cli.py.
"""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
