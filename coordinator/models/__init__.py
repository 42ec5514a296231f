"""Models in the coordinator: uploads, the content-addressed artifact store, model versions and their
variants in the store, and the jobs that run the optimizer (coordinator/optimize) as a subprocess.

    artifacts.py   ArtifactStore: <artifacts_dir>/<sha256>, written atomically, verified on import
    records.py     plain read-only records (VersionRecord, VariantRecord, JobRecord) and NAME:VERSION refs
    repository.py  ModelRepository: versions and variants (the read API other areas use), pushing a version
    jobs.py        JobStore: job state in the store (claim, progress, variants, finish, fail, recovery)
    upload.py      receiving a PushModel stream: spooled to disk, size-limited, data and recipe checked
    runner.py      JobRunner: worker subprocesses, their JSON lines, timeouts, restart recovery
    feed.py        ChangeFeed: wakes WatchJob streams when a job changes
    service.py     ModelService: builds the pieces above from the coordinator's config
    convert.py     records -> admin.proto messages

The coordinator process never imports TensorFlow: only the worker subprocess does.
"""
