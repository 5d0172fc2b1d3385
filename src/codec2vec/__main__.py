"""`python -m codec2vec` is `codec2vec`."""

import sys

from codec2vec.cli import main

sys.exit(main())
