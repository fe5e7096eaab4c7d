"""Putting meter reports on the `meter-reporting` queue and reading them back off it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sensor_billing.errors import InvalidJobDataError
from sensor_billing.jobs.registry import METER_REPORT_JOB_OPTIONS, JobNames, MeterReportJobData


@dataclass(frozen=True, slots=True)
class MeterReportJob:
    """A `meter:report` job with validated data (the seed's `Job<MeterReportJobData>`)."""

    id: str
    data: MeterReportJobData
    attempts_made: int

    @classmethod
    def from_bullmq(cls, job: Any) -> MeterReportJob:
        return cls(
            id=str(job.id),
            data=parse_meter_report_data(job.data),
            attempts_made=int(job.attemptsMade),
        )


def parse_meter_report_data(raw: Mapping[str, Any]) -> MeterReportJobData:
    """Validate wire data; `InvalidJobDataError` names each bad field."""
    try:
        return MeterReportJobData.model_validate(raw)
    except ValidationError as error:
        fields = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'data'}: {item['msg']}"
            for item in error.errors()
        )
        raise InvalidJobDataError(f"invalid meter report job data: {fields}") from None


async def enqueue_meter_report(
    queue: Any,
    data: MeterReportJobData | Mapping[str, Any],
    *,
    job_id: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> str:
    """Add a `meter:report` job to `queue` (a bullmq `Queue` on `meter-reporting`).

    Data is validated before anything reaches Redis. With `job_id`, adding the same id again
    is a no-op in bullmq, which is what makes re-enqueueing a ledger row safe.
    """
    validated = data if isinstance(data, MeterReportJobData) else parse_meter_report_data(data)
    opts: dict[str, Any] = dict(options if options is not None else METER_REPORT_JOB_OPTIONS)
    if job_id is not None:
        opts["jobId"] = job_id
    job = await queue.add(JobNames.METER_REPORT.value, validated.to_wire(), opts)
    return str(job.id)
