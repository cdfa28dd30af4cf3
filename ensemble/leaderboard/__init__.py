"""The leaderboard files: the six CSVs the course scores, their check, and the submission zip (no torch).

Files, in flow order:

``validate``
    what a folder of leaderboard files must hold, and its check against the course's input files.
``write``
    writing the six files byte for byte as the course does, all six or none, and scoring dev.
``submission``
    the submission zip: the validated files, a manifest naming the ensemble, optionally the code.
``votes``
    past submissions (leaderboard files, a submission zip) registered as candidates of hard labels.
"""
from .. import lazy_names

FILES = ("validate", "write", "submission", "votes")
__all__ = ["validate_dir", "write_leaderboard", "make_submission", "list_submissions"]
__getattr__ = lazy_names(__name__, {"validate_dir": "validate", "write_leaderboard": "write",
                                    "make_submission": "submission", "list_submissions": "submission"})
