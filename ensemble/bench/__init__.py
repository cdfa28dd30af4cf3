"""Benchmarks of the tool's inference and training paths against plain ``transformers``.

Plain dicts out (the CLI renders them): ``title``, ``rows`` (one dict per measured system, all with
the same keys) and further sections. No typer/rich here. No core module imports this package.

Files, in flow order:

``machine``
    probes of the machine: dense matmul peak, peak memory, threads, CPU/GPU facts, load, the clock.
``accuracy``
    the unbatched reference forward, label agreement, linear-probe heads, the accuracy checks.
``profiling``
    useful FLOPs counted analytically, and where one call's time goes under ``torch.profiler``.
``targets``
    the issues' targets, each as ``value``, ``target`` and ``met``.
``pipeline``
    the plain ``transformers`` side of the inference bench (``AutoModelForSequenceClassification``).
``inference``
    :func:`~ensemble.bench.inference.bench_inference`: ``transformers.pipeline`` against
    :func:`ensemble.modeling.infer.predict_encoded` on SST and Quora dev, fp32 and bf16, with accuracy checks
    (fp32 against a plain unbatched forward to 1e-4, bf16 argmax agreement with fp32 >= 99.5% on
    SST dev, pipeline against tool).
``training``
    :func:`~ensemble.bench.training.bench_train`: the tool's training step, plain and with SMART,
    against a plain transformers loop on the same batches, interleaved step by step.
``training_options``
    ``bench train``'s rows for bf16 autocast, gradient accumulation and gradient checkpointing.
``selection``
    ``bench select``: the fast selection against a plain re-averaging reference.
``honesty``
    ``bench honesty``: the known-truth simulation of the held-out interval, the modes and ``auto``.
``realcheck``
    ``bench honesty --registry``: the modes and ``auto``'s choice on real candidates, part of dev held out.
``soup_honesty``
    ``bench soup --simulate``: the known-truth simulation of the soup's held-out interval.
``soup``
    ``bench soup``: best single, soups and ensemble side by side: dev, held-out, cost.
``grid``
    ``bench grid``: one small grid on the local engine and on Ray.
``search``
    ``bench search``: the same epoch budget spent by a grid and by ``ensemble search``.
``startup``
    ``bench startup``: ``ensemble --version`` and ``-h`` against ``python -c pass``, as a ratio.

Timings: wall clock, best of ``repeats`` (the median is reported too), CUDA synchronised before
every clock read. The machine's load average is reported: other processes on a small machine
change the numbers a lot.
"""

FILES = ("machine", "accuracy", "profiling", "targets", "pipeline", "inference", "training", "training_options",
         "selection", "honesty", "realcheck", "soup_honesty", "soup", "grid", "search", "startup")
