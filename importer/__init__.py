"""Reading a published challenge record (a record folder or one program) without running any of it.

The parse level of importing: :func:`load_record` turns a folder such as
``records/track_10min_16mb/<date>_<name>/`` into one :class:`ImportedRecord`: the readable program
(self-extracting wrappers decoded, exec stubs followed), its environment settings as
:class:`sandbox.knobs.Knob` entries with the published values applied, the published run settings with
where each came from, what the program needs to run, and the score the record reported.
Each step is its own module: ``unwrap`` (with ``stubs``), ``hyperparams``, ``settings`` (with
``readme``), ``requirements`` (with ``environment``), and ``record`` joining them; ``source`` reads
Python that this interpreter cannot parse whole.
Nothing here executes record code or writes a file.
"""

from importer.environment import missing_requirements
from importer.errors import RecordImportError
from importer.hyperparams import (
    Cast,
    EnvRead,
    HyperparameterTable,
    ReadKind,
    ReadLocation,
    read_hyperparameters,
    render_knob_table,
)
from importer.readme import ReadmeCommands, RunCommand, parse_readme_commands
from importer.record import ImportedRecord, ReportedScore, load_record
from importer.requirements import (
    KNOWN_PACKAGES,
    Need,
    PackageInfo,
    Provider,
    Requirement,
    RequirementKind,
    find_requirements,
)
from importer.settings import (
    PublishedSettings,
    PublishedValue,
    SettingIssue,
    SettingRole,
    SettingSource,
    Severity,
    read_settings,
)
from importer.source import ParseMethod
from importer.unwrap import Codec, Encoding, Layer, Unwrapped, Wrapping, unwrap_file, unwrap_text

__all__ = [
    "KNOWN_PACKAGES",
    "PackageInfo",
    "Provider",
    "Cast",
    "Codec",
    "Encoding",
    "EnvRead",
    "HyperparameterTable",
    "ImportedRecord",
    "Layer",
    "Need",
    "ParseMethod",
    "PublishedSettings",
    "PublishedValue",
    "ReadKind",
    "ReadmeCommands",
    "ReadLocation",
    "RecordImportError",
    "ReportedScore",
    "Requirement",
    "RequirementKind",
    "RunCommand",
    "SettingIssue",
    "SettingRole",
    "SettingSource",
    "Severity",
    "Unwrapped",
    "Wrapping",
    "find_requirements",
    "load_record",
    "missing_requirements",
    "parse_readme_commands",
    "read_hyperparameters",
    "read_settings",
    "render_knob_table",
    "unwrap_file",
    "unwrap_text",
]
