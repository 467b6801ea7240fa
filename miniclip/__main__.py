import sys

from miniclip.cli import main

sys.exit(main())
