import sys

from tfface.cli import main

sys.exit(main())
