"""Benchmarks of the tool's inference and training paths against plain ``transformers``.

Plain dicts out (the CLI renders them): ``title``, ``rows`` (one dict per measured system, all with
the same keys) and further sections. No typer/rich here. No core module imports this package.

:mod:`~ensemble.bench.machine`
    probes of the machine: dense matmul peak, peak memory, threads, CPU/GPU facts, load, the clock.
:mod:`~ensemble.bench.accuracy`
    the unbatched reference forward, label agreement, linear-probe heads, the accuracy checks.
:mod:`~ensemble.bench.profiling`
    useful FLOPs counted analytically, and where one call's time goes under ``torch.profiler``.
:mod:`~ensemble.bench.targets`
    the issue's targets, each as ``value``, ``target`` and ``met``.
:mod:`~ensemble.bench.inference`
    :func:`~ensemble.bench.inference.bench_inference`: ``transformers.pipeline`` against
    :func:`ensemble.modeling.infer.predict_encoded` on SST and Quora dev, fp32 and bf16, with accuracy checks
    (fp32 against a plain unbatched forward to 1e-4, bf16 argmax agreement with fp32 >= 99.5% on
    SST dev, pipeline against tool).
:mod:`~ensemble.bench.training`
    :func:`~ensemble.bench.training.bench_train`: the tool's training step, plain and with SMART,
    against a plain transformers loop on the same batches, interleaved step by step.

Timings: wall clock, best of ``repeats`` (the median is reported too), CUDA synchronised before
every clock read. The machine's load average is reported: other processes on a small machine
change the numbers a lot.
"""
