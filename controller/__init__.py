"""The search: campaign config, the loop that plans, runs and records trials, and the commands around it.

Subpackages, each depending only on those below it (cli -> review, workers -> search -> store):

* :mod:`controller.store`: what a campaign keeps: the Optuna study, the git store, the archive of
  candidates, and the records that turn one into the other.
* :mod:`controller.search`: the loop: planning a trial (parent, operation, proposal), running it in
  the sandbox, confirming wins, and the request queue people steer it with.
* :mod:`controller.workers`: many machines on one shared study and one shared git remote.
* :mod:`controller.review`: read-only views of a campaign: status, leaderboard, report, export.
* :mod:`controller.cli`: the ``autogolf`` command line.

:mod:`controller.config` (the campaign file) and :mod:`controller.errors` sit below all of them.
"""

from controller.ast_lock import install as _serialise_ast_parse

_serialise_ast_parse()  # before any of the controller's threads parse a program (controller.ast_lock)
