import sys

from seqgan.cli import main

sys.exit(main())
