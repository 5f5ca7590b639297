import sys

from covidct.cli import main

sys.exit(main())
