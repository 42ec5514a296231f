"""The states of a rollout and of each of its devices, and how agent install states map onto them.

Rollout:  pending -> running <-> paused;  running | paused -> aborting -> aborted;  running -> done
Device:   pending -> sent -> installing -> committed | failed | rolled_back;  sent | installing -> timed_out;
          pending -> skipped (excluded by selection, or not reached before an abort)
"""
from __future__ import annotations

from edgefleet.v1 import events_pb2

PENDING, RUNNING, PAUSED, ABORTING, ABORTED, DONE = "pending", "running", "paused", "aborting", "aborted", "done"
ROLLOUT_STATES = (PENDING, RUNNING, PAUSED, ABORTING, ABORTED, DONE)
UNFINISHED = (PENDING, RUNNING, PAUSED, ABORTING)
FINISHED = (ABORTED, DONE)

SENT, INSTALLING, COMMITTED, FAILED, ROLLED_BACK, TIMED_OUT, SKIPPED = "sent", "installing", "committed", "failed", "rolled_back", "timed_out", "skipped"
DEVICE_STATES = (PENDING, SENT, INSTALLING, COMMITTED, FAILED, ROLLED_BACK, TIMED_OUT, SKIPPED)
IN_FLIGHT = (SENT, INSTALLING)  # a deploy is out and the device has not finished
DEVICE_DONE = (COMMITTED, FAILED, ROLLED_BACK, TIMED_OUT, SKIPPED)  # nothing more to wait for
OUTCOMES = (COMMITTED, FAILED, ROLLED_BACK, TIMED_OUT)  # devices that finished (the failure percentage's base)
BAD_OUTCOMES = (FAILED, ROLLED_BACK, TIMED_OUT)
TOUCHED = (SENT, INSTALLING, COMMITTED, TIMED_OUT)  # may run (or come to run) the new model: an abort rolls these back

# Rollback of one device after an abort.
RB_NONE, RB_PENDING, RB_SENT, RB_DONE, RB_TIMED_OUT, RB_REJECTED = "", "pending", "sent", "done", "timed_out", "rejected"
RB_OPEN = (RB_PENDING, RB_SENT)

S = events_pb2
# How far an install got; an event never moves a device back down this order for one sequence
# (a QoS 1 redelivery of an older state arriving late changes nothing).
INSTALL_RANK = {
    S.INSTALL_STATE_UNSPECIFIED: 0,
    S.INSTALL_STATE_DOWNLOADING: 1,
    S.INSTALL_STATE_VERIFYING: 2,
    S.INSTALL_STATE_STAGED: 3,
    S.INSTALL_STATE_TRIAL: 4,
    S.INSTALL_STATE_COMMITTED: 5,
    S.INSTALL_STATE_FAILED: 6,
    S.INSTALL_STATE_ROLLED_BACK: 7,  # after a commit, a rollback order can still undo it
}
DEVICE_STATE_OF = {
    S.INSTALL_STATE_DOWNLOADING: INSTALLING,
    S.INSTALL_STATE_VERIFYING: INSTALLING,
    S.INSTALL_STATE_STAGED: INSTALLING,
    S.INSTALL_STATE_TRIAL: INSTALLING,
    S.INSTALL_STATE_COMMITTED: COMMITTED,
    S.INSTALL_STATE_FAILED: FAILED,
    S.INSTALL_STATE_ROLLED_BACK: ROLLED_BACK,
}
# Install states worth a line in a device's model history: what it runs changed, or an install ended.
HISTORY_STATES = (S.INSTALL_STATE_TRIAL, S.INSTALL_STATE_COMMITTED, S.INSTALL_STATE_ROLLED_BACK, S.INSTALL_STATE_FAILED)


def install_word(state: int) -> str:
    """INSTALL_STATE_COMMITTED -> committed."""
    return events_pb2.InstallState.Name(state).removeprefix("INSTALL_STATE_").lower() if state else "-"
