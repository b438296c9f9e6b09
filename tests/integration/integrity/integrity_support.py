"""Constants shared by the integrity integration tests and their conftest.

A module with its own name: ``from conftest import ...`` would resolve to
whichever directory's conftest pytest imported first.
"""

BLOCK = 64 * 1024  # small blocks keep the tests fast
