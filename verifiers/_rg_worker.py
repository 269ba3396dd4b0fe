"""The reasoning-gym verifier's worker entry (`verifiers.rg.RGVerifier`'s pool resolves ``score_in_worker`` here).

Importing reasoning_gym takes seconds (more on a loaded machine); a worker imports its job module
before it says it is ready, and a job's clock starts only then. Importing it here keeps that cost out of
the first check's time limit, so a right answer is never a ``timeout`` because its worker was new.
"""

import reasoning_gym  # noqa: F401 - imported for its cost, before the worker is ready

from verifiers.rg import score_in_worker  # noqa: F401 - what the pool calls
