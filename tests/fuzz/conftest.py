import os
import sys

# the shared builders (robust_models.py, fuzz_lib.py) are imported as plain modules
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "robustness"))
