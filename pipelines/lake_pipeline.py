"""The lake pipeline: list the partitions -> one task per partition (``dsl.ParallelFor``) -> collect.

Each partition task ingests one file (load + validate + commit, as ``hftpipe lake ingest``) or
re-validates one stored partition, then builds its features (as ``hftpipe lake features``); the collect
step assigns splits across partitions and fails naming every failed partition. All tasks share the
dataset root: on a cluster the ReadWriteMany claim ``hftpipe-lake`` (kubernetes/dask/lake-pvc.yaml) is
mounted at the image's ``HFTPIPE_HOME`` in every task, so the default root (``HFTPIPE_HOME/lake``) and
the validation reports live on it; the Dask cluster of kubernetes/dask mounts the same claim at the same
path. Input files must be readable by the tasks: on the claim (e.g. ``/var/lib/hftpipe/incoming``) or in
the image (``data/raw``). ``kfp.local`` ignores the mount.

``parallelism`` (how many partition tasks run at once) is fixed when compiling: KFP's IR stores
``iteratorPolicy.parallelismLimit`` as a number, and kfp 2.17 refuses a pipeline parameter there.
``build_lake_pipeline(parallelism=N)`` compiles another limit.
"""

from kfp import dsl

from components.lake import lake_collect, lake_list, lake_partition

PIPELINE_NAME = "hftpipe-lake"
PARALLELISM = 8  # partition tasks at once in the committed YAML
LAKE_PVC = "hftpipe-lake"  # kubernetes/dask/lake-pvc.yaml
LAKE_MOUNT = "/var/lib/hftpipe"  # HFTPIPE_HOME in the image: root "" resolves to its lake/ folder
# One partition in one process: 1.1 GB peak RSS measured on the GOOG 10-level sample day (ingest +
# features); a liquid symbol's full day holds more events, hence the headroom.
TASK_CPU, TASK_MEMORY_REQUEST, TASK_MEMORY_LIMIT = "1", "2Gi", "3Gi"


def mount_lake(task: dsl.PipelineTask, pvc: str = LAKE_PVC, mount_path: str = LAKE_MOUNT) -> dsl.PipelineTask:
    """Mount the dataset's claim in a task's pod.

    Writes the Kubernetes platform config that ``kfp.kubernetes.mount_pvc`` writes (the same
    ``pvcMount`` entry of the KubernetesExecutorConfig), without adding kfp-kubernetes as a dependency
    for one constant claim.
    """
    config = task.platform_config.setdefault("kubernetes", {})
    config.setdefault("pvcMount", []).append({
        "constant": pvc,  # the deprecated field, still read by older KFP backends
        "mountPath": mount_path,
        "pvcNameParameter": {"runtimeValue": {"constant": pvc}},
    })
    return task


def build_lake_pipeline(parallelism: int = PARALLELISM, pvc: str = LAKE_PVC):
    """The lake pipeline with ``parallelism`` partition tasks at once, mounting claim ``pvc`` ("" mounts none)."""

    def mounted(task: dsl.PipelineTask) -> dsl.PipelineTask:
        return mount_lake(task, pvc) if pvc else task

    @dsl.pipeline(name=PIPELINE_NAME, description="Partitioned market data: one task per partition, then splits.")
    def lake_pipeline(inputs: list[str] = [], root: str = "", config_json: str = "") -> None:  # noqa: B006
        """Ingest, validate and featurise every partition in parallel.

        Args:
            inputs: files, folders or globs readable by the tasks; empty: re-validate and refresh the
                features of every partition already in the manifest.
            root: dataset folder (empty: lake.root, else HFTPIPE_HOME/lake, the claim's mount point).
            config_json: the resolved config as JSON (empty: params.yaml of the working directory).
        """
        # Inputs can change under the same path (tonight's file): never reuse a cached listing or result.
        listed = mounted(lake_list(inputs=inputs, root=root, config_json=config_json).set_caching_options(False))
        with dsl.ParallelFor(listed.output, parallelism=parallelism, name="partitions") as item:
            part = mounted(
                lake_partition(item=item, root=root, config_json=config_json,
                               run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
                .set_caching_options(False)
                .set_cpu_request(TASK_CPU)
                .set_memory_request(TASK_MEMORY_REQUEST)
                .set_memory_limit(TASK_MEMORY_LIMIT))
        mounted(lake_collect(results=dsl.Collected(part.output), root=root, config_json=config_json)
                .set_caching_options(False))

    return lake_pipeline


lake_pipeline = build_lake_pipeline()
