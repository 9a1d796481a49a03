"""`splatrefine batch`: refine a fleet of captures on an executor, resumably, into one summary.

    sources.py   SOURCE (a folder of captures, a FaceScape tree, a text file of paths) -> captures
    names.py     one collision-free run folder name per capture
    job.py       the job: one capture's refine, its user errors returned as a failed record
    status.py    what a capture's run folder says (finished?), the records of fleet.json
    driver.py    checks everything, then runs the jobs on the executor with fleet progress
    html.py      fleet.html: the sortable table, per-bucket aggregate mIoU, thumbnails
    manifest.py  OUT/manifest.json: one refined dataset across captures (`splatrefine train OUT`)
"""

from .driver import BatchOptions, run_batch

__all__ = ["BatchOptions", "run_batch"]
