import sys

from marker_excite.cli import main

sys.exit(main())
