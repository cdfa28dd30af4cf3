"""The loopback Ray cluster of the Ray tests (tests/scale/test_ray.py, tests/test_search_ray.py): a head
and one worker node of one CPU each on 127.0.0.1, whose worker processes may not touch the driver's
folder (:mod:`ray_guard` logs any attempt), connected for the block and shut down after it."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parent


@contextmanager
def guarded_cluster(driver: Path, log: Path):
    """``(cluster, worker node)``, ``ray`` connected to the cluster; both stopped when the block ends."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        env = {"worker_process_setup_hook": "ray_guard.install",
               "env_vars": {"ENSEMBLE_GUARD_ROOTS": str(driver), "ENSEMBLE_GUARD_LOG": str(log), "OMP_NUM_THREADS": "1",
                            "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}}
        ray.init(address=cluster.address, runtime_env=env, log_to_driver=False, logging_level="ERROR")
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()
