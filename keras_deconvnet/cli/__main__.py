import sys

from keras_deconvnet.cli import main

sys.exit(main())
