"""What a trial worker sets for its Keras backend, and what it records of it.

Every worker runs the backend the driver chose (``core/backend.py``): ``KERAS_BACKEND`` is in its
environment before it imports Keras (inherited from the driver locally, Ray's ``runtime_env`` on a
cluster). Per backend, a trial worker then

- gives the backend only the trial's CPUs (``executor.cpus_per_trial``), so concurrent trials do
  not oversubscribe the cores: TensorFlow's intra/inter-op pools, XLA's CPU threads for JAX
  (``XLA_FLAGS``, read when JAX first initialises), ``torch.set_num_threads``;
- takes only its share of a GPU (``executor.gpus_per_trial`` below 1): TensorFlow's memory growth,
  JAX without preallocation and with its memory fraction, PyTorch's per-process fraction; with 0,
  it sees no GPU (Ray hides them, as it did before 2.60: ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO``);
- clears what the backend keeps between trials (TensorFlow's gradient registry, PyTorch's
  allocator cache; JAX's in-memory program caches only past a growth bound, since later trials
  of the same shapes reuse them);
- on JAX, keeps compiled programs in a persistent cache in ``sweep.root``: trials of the same
  shapes (Hyperband's continued trials, repeated architectures, the final retrain) skip XLA's
  compilation, most of a small JAX trial's time (bench/RESULTS.md, section 9b).

Only the chosen backend's library is imported: under JAX or PyTorch no TensorFlow is loaded here.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Optional

from ktsweep.core.backend import ENV, version

# XLA's CPU runtime runs each dot and convolution on all cores unless told not to (read once, when JAX
# initialises its backends). It has no flag for N threads: a trial of one CPU gets one, a wider trial all.
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"
# jaxlib 0.10 reads XLA_CLIENT_MEM_FRACTION; the older XLA_PYTHON_CLIENT_MEM_FRACTION is a deprecated alias,
# and both set at once raise at JAX's start: a user's own setting of either is left as it is.
JAX_FRACTION_VARS = ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION")
# What this module may set for a GPU share, recorded as the trial's worker saw it.
GPU_VARIABLES = ("TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE", *JAX_FRACTION_VARS,
                 "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO")
JAX_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
JAX_CACHE_FOLDER = "jax_cache"
JAX_CACHE_GROWTH_MB = 256  # a JAX worker's growth past which its in-memory program caches are dropped


def threads_for(cpus: float) -> int:
    return max(1, int(cpus))


def worker_env(backend: str, *, cpus: float, gpus: float, current: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment a trial worker needs before it imports Keras; the user's own settings win."""
    current = dict(os.environ if current is None else current)
    env = {ENV: backend}
    if gpus == 0:
        env["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "1"  # an actor that asked for no GPU gets CUDA_VISIBLE_DEVICES=""
    if backend == "jax":
        if threads_for(cpus) == 1 and "xla_cpu_multi_thread_eigen" not in current.get("XLA_FLAGS", ""):
            env["XLA_FLAGS"] = " ".join(part for part in (current.get("XLA_FLAGS", ""), XLA_ONE_THREAD) if part)
        if 0 < gpus < 1:
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
            given = [name for name in JAX_FRACTION_VARS if current.get(name)]
            env.update({name: current[name] for name in given} if given else {"XLA_CLIENT_MEM_FRACTION": f"{gpus:.3f}"})
    elif backend == "tensorflow" and 0 < gpus < 1:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    # the user's own settings win (and travel to a cluster's workers with ours)
    return {key: value if key in (ENV, "XLA_FLAGS") else current.get(key, value) for key, value in env.items()}


def backend() -> str:
    """The Keras backend of this process (Keras is imported by then)."""
    import keras

    return str(keras.config.backend())


class _State:
    prepared = False
    applied: dict[str, Any] = {}
    compile_seconds = 0.0
    cache_hits = 0
    listening = False
    jax_baseline_mb: Optional[float] = None  # the worker's size after its first JAX trial
    jax_cache_clears = 0


def keep_tensorflow_out() -> None:
    """On JAX and PyTorch, let Keras use TensorFlow only where something else has imported it.

    Keras 3 asks ``tf.available`` (a lazy module) when it serialises a model, seeds its RNGs or looks
    at a dataset, and that *imports* TensorFlow whenever it is installed, as it is with ktsweep: on
    JAX every saved model cost a TensorFlow import (~6 s, ~500 MB per worker). Here it answers
    "available" only once TensorFlow is loaded (a user's ``tf.data`` pipeline, the TensorBoard
    callback), and Keras' TensorFlow interplay then works as before."""
    from keras.src.utils import module_utils

    lazy, loaded_only = module_utils.tensorflow, _loaded_only()
    if backend() == "tensorflow" or isinstance(lazy, loaded_only):
        return
    lazy.__class__ = loaded_only
    lazy._available = None


@functools.cache
def _loaded_only() -> type:
    """Keras' lazy module, available only once imported (made on first use: Keras is imported by then)."""
    from keras.src.utils.module_utils import LazyModule

    class LoadedOnly(LazyModule):
        @property
        def available(self) -> bool:
            if "tensorflow" not in sys.modules:
                return False
            self.initialize()
            return True

    return LoadedOnly


def prepare(*, cpus: float, gpus: float, cache_root: Optional[str]) -> None:
    """Before a trial: the backend's threads and GPU share (once per process), JAX's compilation cache."""
    name = backend()
    keep_tensorflow_out()
    if not _State.prepared:
        _State.applied = {"backend": name, "threads": threads_for(cpus)}
        {"tensorflow": _prepare_tensorflow, "jax": _prepare_jax, "torch": _prepare_torch}[name](cpus, gpus)
        _State.prepared = True
    if name == "jax":
        _use_compile_cache(cache_root)
    _State.compile_seconds, _State.cache_hits = 0.0, 0


def _prepare_tensorflow(cpus: float, gpus: float) -> None:
    import tensorflow as tf

    threads = threads_for(cpus)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialised in this process
        pass
    _State.applied["threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    if 0 < gpus < 1:
        try:
            for device in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:  # devices initialised already: TF_FORCE_GPU_ALLOW_GROWTH from the environment holds
            pass
        _State.applied["gpu_memory"] = "growth"


def _prepare_jax(cpus: float, gpus: float) -> None:
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():  # read only when JAX starts its backends
        os.environ.update(worker_env("jax", cpus=cpus, gpus=gpus))
    _State.applied["threads"] = 1 if XLA_ONE_THREAD in os.environ.get("XLA_FLAGS", "") else "all"
    if 0 < gpus < 1:
        fraction = next((os.environ[name] for name in JAX_FRACTION_VARS if os.environ.get(name)), "default")
        _State.applied["gpu_memory"] = f"fraction {fraction}, no preallocation"
    _listen_to_jax()


def _prepare_torch(cpus: float, gpus: float) -> None:
    import torch

    threads = threads_for(cpus)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only before PyTorch's first parallel work
        pass
    _State.applied["threads"] = torch.get_num_threads()
    if 0 < gpus < 1 and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(gpus, index)
        _State.applied["gpu_memory"] = f"fraction {gpus:g}"


def _listen_to_jax() -> None:
    """Count the seconds JAX spends tracing and compiling, and its persistent-cache hits, per trial."""
    if _State.listening:
        return
    from jax import monitoring

    def on_duration(event: str, seconds: float, **_: Any) -> None:
        if event in JAX_COMPILE_EVENTS:
            _State.compile_seconds += seconds

    def on_event(event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _State.cache_hits += 1

    monitoring.register_event_duration_secs_listener(on_duration)
    monitoring.register_event_listener(on_event)
    _State.listening = True


def _use_compile_cache(cache_root: Optional[str]) -> None:
    """JAX's persistent compilation cache, shared by the sweep's workers on one machine; every program
    kept (the default keeps only those that took over a second to compile: most of ours take less)."""
    if not cache_root:
        return
    import jax

    folder = os.path.join(cache_root, JAX_CACHE_FOLDER)
    if jax.config.jax_compilation_cache_dir != folder:
        try:
            os.makedirs(folder, exist_ok=True)  # on each node: a cluster's workers may not see the driver's disk
        except OSError as exc:
            _State.applied["compile_cache"] = f"off ({type(exc).__name__}: {folder})"
            return
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _State.applied["compile_cache"] = folder


class TrialState:
    """What a trial leaves in the backend's global state, taken before it starts and dropped after."""

    def __init__(self) -> None:
        self.name = backend()
        self.gradients = custom_gradients() if self.name == "tensorflow" else set()

    def release(self) -> None:
        if self.name == "tensorflow":
            _release_gradients(self.gradients)
        elif self.name == "jax":
            _bound_jax_caches()
        elif self.name == "torch":
            import torch

            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.empty_cache()


def _bound_jax_caches() -> None:
    """Keep JAX's in-memory caches of compiled programs, unless the worker has grown past a bound.

    A trial's own train and test steps die with its model; what JAX keeps across trials is one
    program per shape of its module-level functions (the initializers' ``_uniform``, small ops),
    and later trials of the same shapes reuse them: clearing them after every trial made a digits
    RandomSearch 12 x 5 on JAX 10% slower (86.8 s against 78.6 s, one run each). Past
    ``JAX_CACHE_GROWTH_MB`` over the worker's size after its first trial, ``jax.clear_caches()``
    drops them (the persistent cache on disk still saves their compilation)."""
    size = rss_mb()
    if _State.jax_baseline_mb is None:
        _State.jax_baseline_mb = size
    elif size - _State.jax_baseline_mb > JAX_CACHE_GROWTH_MB:
        import jax

        jax.clear_caches()
        _State.jax_cache_clears += 1
        _State.jax_baseline_mb = rss_mb()


def rss_mb() -> float:
    """This process's resident memory now."""
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def custom_gradients() -> set[str]:
    """The names in TensorFlow's global gradient registry that ``@custom_gradient`` traces added."""
    from tensorflow.python.framework import ops

    return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}


def _release_gradients(before: set[str]) -> None:
    """Drop the custom-gradient entries this trial's traces registered.

    Keras' TensorFlow optimizer all-reduces gradients even without a distribution strategy, and
    that goes through ``@custom_gradient``: every trace of a train step registers a closure in
    TensorFlow's global gradient registry and never removes it (tensorflow/tensorflow#97697). The
    closure holds the step's graph, so a reused worker kept ~1.4 MB per trial. After the trial no
    graph of it is traced or differentiated again, so its entries are dead weight.
    """
    from tensorflow.python.framework import ops

    registry = ops._gradient_registry._registry
    for name in custom_gradients() - before:
        registry.pop(name, None)


def facts() -> dict[str, Any]:
    """The backend's part of a trial's worker facts (recorded as ``ktsweep.worker.*`` tags)."""
    name = _State.applied.get("backend") or backend()
    found = {
        "backend": name,
        "backend_version": version(name),
        "tensorflow_loaded": "tensorflow" in sys.modules,
        **{key: value for key, value in _State.applied.items() if key != "backend"},
        "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "(all)"),
        "gpu_env": " ".join(f"{key}={os.environ[key]}" for key in GPU_VARIABLES if key in os.environ),
    }
    if name == "jax":
        found["compile_seconds"] = round(_State.compile_seconds, 3)
        found["compile_cache_hits"] = _State.cache_hits
        found["jax_cache_clears"] = _State.jax_cache_clears
    peak = gpu_peak_mb(name)
    if peak is not None:
        found["gpu_peak_mb"] = peak
    return found


def gpu_peak_mb(name: str) -> Optional[float]:
    """The GPU memory this worker has used at most (its first GPU), where the backend can say."""
    try:
        if name == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_logical_devices("GPU"):
                return None
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
            tf.config.experimental.reset_memory_stats("GPU:0")
        elif name == "jax":
            import jax

            devices = [device for device in jax.local_devices() if device.platform == "gpu"]
            if not devices:
                return None
            peak = (devices[0].memory_stats() or {}).get("peak_bytes_in_use", 0)  # since the process started
        else:
            import torch

            if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
                return None
            peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()
    except Exception:  # a backend without the counter: nothing recorded, the trial unaffected
        return None
    return round(peak / 2**20, 1)
