"""The one error hierarchy of agent-executor.

    AgentExecutorError
    ├── InvalidJob                  the envelope or JobExecutionEvent cannot be read
    │                               (HTTP 400, NATS term; nothing is recorded)
    ├── JobConflict                 the job is running under another worker's lease (409)
    ├── JobNotFound                 no such job in the ledger (404)
    ├── JobFinished                 the job already ended; it cannot be cancelled (409)
    ├── JobMismatch                 the job_id is known with another definition or input
    │                               (HTTP 422, NATS term; no result)
    ├── InvalidRequest              a bad query parameter or header of an API call (400)
    ├── LeaseLost                   this worker no longer owns the job's lease
    ├── DependencyUnavailable       the service's own dependency failed (503, NATS nak)
    └── JobFailure                  the job itself failed; ends it with a `failed` result
        ├── InvalidAgentDefinition  readable but invalid agent_definition
        ├── ModelError              a model provider failed or is not configured
        ├── ToolError               a tool failed in a way the agent cannot recover from
        ├── JobTimeout              ran longer than JOB_TIMEOUT_SECONDS
        ├── AttemptsExhausted       claimed more often than MAX_JOB_ATTEMPTS (crashes,
        │                           takeovers): ended without running it again
        ├── StepLimitExceeded       the agent ran more steps than a run may take
        ├── BudgetExceeded          the job reached its limits (model calls, tokens)
        └── AgentError              anything else the agent raised

`JobFailure.error_type` is the `error.type` on the wire.
"""

from __future__ import annotations


class AgentExecutorError(Exception):
    """Root of every error this service raises on purpose."""


class InvalidJob(AgentExecutorError):
    """The inbound event or job cannot be read; `details` says each problem."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class JobConflict(AgentExecutorError):
    """Another worker holds a live lease on this job."""


class JobNotFound(AgentExecutorError):
    """The ledger has no job with this id."""


class JobFinished(AgentExecutorError):
    """The job already ended (completed, failed or cancelled)."""


class WrongJobState(AgentExecutorError):
    """The job is not in a state the request needs: a resume of a job that is not
    interrupted (or of another interrupt than the pending one), a retry of a job that
    is not failed or cancelled."""


class JobMismatch(AgentExecutorError):
    """The job_id names a recorded job whose fingerprint (definition and input) differs."""
class InvalidRequest(AgentExecutorError):
    """A request to the API (not a job) is malformed; `details` names each parameter."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class LeaseLost(AgentExecutorError):
    """The lease expired and another worker took the job over."""


class DependencyUnavailable(AgentExecutorError):
    """A backing service (ledger, checkpoints, result bus) failed; retry later."""


class JobFailure(AgentExecutorError):
    """The job failed; it ends with a `failed` result carrying this error."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def error_type(self) -> str:
        return type(self).__name__


class InvalidAgentDefinition(JobFailure):
    """The agent_definition is readable but invalid; the message names the path."""


class ModelError(JobFailure):
    """A model provider failed or is not configured; `retryable` when the failure was
    transient (429, 5xx, timeout, lost connection) and outlasted the retries."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ToolError(JobFailure):
    """A tool failed and the agent could not continue."""


class JobTimeout(JobFailure):
    """The job ran longer than JOB_TIMEOUT_SECONDS."""


class AttemptsExhausted(JobFailure):
    """The job was claimed more than MAX_JOB_ATTEMPTS times; it is not run again."""


class StepLimitExceeded(JobFailure):
    """The agent took more steps than one run may (an endless tool loop)."""


class BudgetExceeded(JobFailure):
    """The job reached `limits.max_model_calls` or `limits.max_total_tokens`."""


class AgentError(JobFailure):
    """The agent raised something unexpected."""
