"""Read-only views of a campaign, for the morning after: status, leaderboard, detail, report, export.

* views.py: :class:`Campaign` (a run folder opened for reading) and the queries on it.
* report.py: the HTML report.
* export.py: a candidate as a challenge records folder.
"""

from controller.review.views import Campaign, campaign_status, diff_between, leaderboard, trial_detail

__all__ = ["Campaign", "campaign_status", "diff_between", "leaderboard", "trial_detail"]
