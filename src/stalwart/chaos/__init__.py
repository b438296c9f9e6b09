"""A seeded fault campaign against the demo observatory (``stalwart chaos``).

:func:`~stalwart.chaos.schedule.plan` turns a seed into a fault schedule;
:mod:`.faults` injects and heals each fault; :mod:`.system` runs the demo
under its watchdog as the system under test; :mod:`.checker` reads the store
and the integrity catalog for broken invariants; :mod:`.report` writes the
Markdown report and its timeline; :mod:`.campaign` ties them together.
"""
