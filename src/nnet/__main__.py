import sys

from nnet.cli import main

sys.exit(main())
