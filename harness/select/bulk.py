"""Bulk loading: no cycle collection while a large input becomes Python objects, nor after.

CPython's collector runs every few hundred new container objects and, every so often, walks
every object alive. Loading 100,000 images and their artifacts creates a few hundred thousand
objects that live for the whole run and hold no cycle: the collector walked them again and
again (a quarter of a selection's CPU time). Pausing it only postpones that walk, so a large
load is then frozen (`gc.freeze`: moved to a generation the collector never walks). That also
exempts any cyclic garbage alive at that moment, so only loads above FREEZE_ABOVE new objects
are frozen: a lab-sized manifest leaves the collector as it was.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

FREEZE_ABOVE = 20_000  # container objects created during the load


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] > FREEZE_ABOVE:  # counted even while the collector is off
            gc.freeze()
        if was_enabled:
            gc.enable()
