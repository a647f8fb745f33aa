"""A job's fingerprint (CONTRACT section 2): one `job_id` names one job."""

from __future__ import annotations

import hashlib
import json

from agent_executor.domain.job import Job


def fingerprint(job: Job) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of the definition and the
    input. The trace id is not part of it: the same content traced anew is the same job."""
    canonical = json.dumps({"agent_definition": job.agent_definition,
                            "input_payload": job.input_payload},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def mismatch_message(job_id: str) -> str:
    return (f"job {job_id!r} is already recorded with another agent_definition or "
            "input_payload: a job_id names one job; send the changed job under a new job_id")
