"""`python -m bench`: run the whole benchmark once and write bench/results/<timestamp>.{json,md}."""

import sys

from bench.run import main

sys.exit(main())
