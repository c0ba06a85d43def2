"""`python -m pyambient`."""
import sys

from pyambient.cli import main

sys.exit(main())
