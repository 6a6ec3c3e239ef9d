import sys

from nnet.apps.cli import main

sys.exit(main())
