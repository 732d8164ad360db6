import sys

from cnnrt.cli import main

sys.exit(main())
