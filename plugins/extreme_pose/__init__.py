"""The extreme-pose experiment (docs/results.md): does fine-tuning on refined labels fix a
frontal-only parser? `splatrefine experiment OUT -c examples/extreme_pose/cpu.yaml`.

A plugin like any other: it adds its command through `splatrefine_register_commands` and builds
on public APIs only (the engine, the registry's components, the executors, the synthetic plugin's
procedural heads). One module per job:

    config.py    the schema (ExperimentConfig, TargetSpec), validation, --set, the plugin checks
    layout.py    the experiment folder: one name per path, and how OUT is prepared
    stages.py    data synthesis, datasets, refine runs, training, evaluation; worker entry points
    plan.py      the stage graph and its executor (Experiment, run_experiment)
    results.py   results.json and results.md
    figures.py   bar charts and contact sheets
    command.py   `splatrefine experiment`
    plugin.py    the hook
"""
