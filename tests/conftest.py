import os
import sys

# tests/helpers.py is imported as `helpers` by the test modules.
sys.path.insert(0, os.path.dirname(__file__))
