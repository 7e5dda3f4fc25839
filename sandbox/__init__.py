"""Run candidate programs under the challenge limits and score them with trusted code.

Public surface: :func:`run` (one candidate to a :class:`RunResult`), :func:`preflight` (seconds-long
checks before any GPU time), :class:`GpuPool` (GPU indices for concurrent runs), the spec types, and
:func:`get_backend`, and :func:`probe_bwrap` (whether the local backend can confine programs here).
Importing this package never imports torch or a backend implementation.
"""

from sandbox.backends.confinement import BwrapProbe, Isolation, probe_bwrap
from sandbox.backends.registry import get_backend
from sandbox.errors import HarnessError, SandboxUnavailable
from sandbox.gpu_pool import GpuPool, Lease
from sandbox.preflight import PreflightReport, PreflightStage, preflight
from sandbox.runner import run
from sandbox.spec import (
    ARTIFACT_LIMIT_BYTES,
    ArtifactBytes,
    CurvePoint,
    DataPaths,
    Limits,
    Phase,
    ProgressEvent,
    RunResult,
    RunSpec,
    RunStatus,
    StopRequest,
)

__all__ = [
    "ARTIFACT_LIMIT_BYTES",
    "ArtifactBytes",
    "BwrapProbe",
    "CurvePoint",
    "DataPaths",
    "GpuPool",
    "HarnessError",
    "Isolation",
    "Lease",
    "Limits",
    "Phase",
    "PreflightReport",
    "PreflightStage",
    "ProgressEvent",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "SandboxUnavailable",
    "StopRequest",
    "get_backend",
    "preflight",
    "probe_bwrap",
    "run",
]
