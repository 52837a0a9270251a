"""Every job in this process, one after another: what ``cnnbench compare`` does by default."""

from __future__ import annotations

from collections.abc import Callable

from cnnbench.errors import ResultsError
from cnnbench.launchers.base import Job, JobView, Launcher, Outcome
from cnnbench.training.status import final_status
from cnnbench.training.trainer import Callbacks, Trainer


class InlineLauncher(Launcher):
    """Trains each job here; ``callbacks(job)`` is its progress display."""

    name = "inline"
    trains_here = True

    def __init__(self, callbacks: Callable[[Job], Callbacks] | None = None) -> None:
        self.callbacks = callbacks

    def run(self, jobs: list[Job], view: JobView, outcomes: dict[str, Outcome]) -> None:
        view.jobs_planned(len(jobs))
        for job in jobs:
            outcomes[job.label] = Outcome()
            view.job_started(job)
            try:
                Trainer(job.recipe, self.callbacks(job) if self.callbacks else None).run()
                outcomes[job.label] = Outcome(ended=True, returncode=0)
            except ResultsError:
                raise  # the results store itself is in trouble, for every job alike
            except Exception as exc:  # one run's failure must not lose the others: its status is its row
                outcomes[job.label] = Outcome(ended=True, returncode=1, status=final_status(exc))
            view.job_ended(job, outcomes[job.label])
