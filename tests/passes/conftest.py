import os
import sys

# pass_helpers.py and ir_reference.py are imported as plain modules by these tests
sys.path.insert(0, os.path.dirname(__file__))
