"""The chaos suite: the production profile's job path under crashes, round after round.

``python -m chaos --rounds N`` (``make chaos ROUNDS=N``) runs N rounds on the development
services of ``scripts/services/`` (``scripts/with-services.sh`` starts and stops them). Each
round runs ``imgproc serve``, ``imgproc relay`` and two ``imgproc worker`` processes in
production settings, sends its jobs through the API as a user would, and meanwhile SIGKILLs a
worker (and starts a replacement), SIGKILLs and restarts the relay, kills the broker and
starts it again, and SIGTERMs a worker while a new one joins. It reports, per round, the jobs
lost, FAILED and differing from a reference render, and the time to drain
(:mod:`chaos.checks`); the report goes to ``var/chaos/<run>/``. The target is 0, 0 and 0.

``tests/e2e/production/test_production_chaos.py`` runs one short round inside ``make test``.
"""
