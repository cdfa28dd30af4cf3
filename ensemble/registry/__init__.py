"""The registry: candidates with their weights and cached, unrounded predictions, the runs that
made them and the ensembles selected from them. Storage is torch-free; only the registering
files load models, and only inside the functions that need them.

Files, in flow order:

``manifest``
    the fields of a candidate's ``candidate.json``: checked on every read, read through typed
    accessors (the candidate's ``run_id``, ``files``, ``prediction_sha256`` ...), and its seal.
``candidate``
    one candidate folder: manifest, cached predictions, staleness, the model check.
``saved``
    the saved-ensemble document (``ensembles/<name>.json``): written by ``select``, read and
    checked field by field before ``predict`` uses it.
``recovery``
    locks, and the recovery on open of whatever a killed writer left behind.
``store``
    :class:`Registry`: atomic adds, updates and removals, saved ensembles, ``verify``.
``home``
    ``registry.json``: the data folder the candidates were made from, and ``--data`` resolved through it.
``runs``
    training runs' records (``runs/<run_id>/record.json``).
``register``
    putting candidates in: model folders, exported candidates, imported predictions, refresh.
``keeper``
    training epochs into candidates: :func:`train_into`, the one entry point of a training run.
``logged``
    :func:`log_candidate`: any training loop's unrounded outputs, checked and registered (no torch).
``adapter``
    the course's ``MultitaskBERT`` interface run over dev and test and logged in one call.
"""
from .. import lazy_names

FILES = ("manifest", "candidate", "saved", "recovery", "store", "home", "runs", "register", "keeper", "logged", "adapter")
__all__ = ["Candidate", "Registry", "log_candidate", "log_course_model", "read_ensemble_file", "register_model",
           "register_predictions", "train_into"]
__getattr__ = lazy_names(__name__, {"Candidate": "candidate", "Registry": "store", "read_ensemble_file": "saved",
                                    "register_model": "register", "register_predictions": "register",
                                    "train_into": "keeper", "log_candidate": "logged",
                                    "log_course_model": "adapter"})
