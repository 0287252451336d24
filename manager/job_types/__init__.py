"""Job types: Python modules that turn a submission into tasks (see ``authoring``)."""

from manager.job_types.authoring import AuthoredJob, AuthoredTask, JobTypeError
from manager.job_types.registry import JobType, JobTypes
from manager.job_types.schema import JobTypeSchema, validate_settings

__all__ = [
    "AuthoredJob",
    "AuthoredTask",
    "JobType",
    "JobTypeError",
    "JobTypeSchema",
    "JobTypes",
    "validate_settings",
]
