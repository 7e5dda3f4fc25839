"""What a campaign keeps, and nothing about how it searches.

* :class:`CampaignStudy` (study.py): the Optuna study, trials asked, told and read back as
  :class:`TrialRecord`.
* :class:`GitStore` (gitstore.py): one repository per campaign, a branch and a note per candidate.
* :class:`Archive` of :class:`Candidate` (archive.py): the frontier the loop picks parents from.
* :class:`TrialAttrs` (trial_attrs.py): everything a trial records beside its state, one model.
* records.py: a candidate to trial attributes and back; the archive rebuilt from the study alone.
"""

from controller.store.archive import Archive, Candidate, Operation
from controller.store.gitstore import GitStore
from controller.store.records import rebuild_archive
from controller.store.study import CampaignStudy, TrialHandle, TrialRecord
from controller.store.trial_attrs import Discredit, TrialAttrs

__all__ = [
    "Archive",
    "CampaignStudy",
    "Candidate",
    "Discredit",
    "GitStore",
    "Operation",
    "TrialHandle",
    "TrialAttrs",
    "TrialRecord",
    "rebuild_archive",
]
