"""Files and fine-tuning jobs on a provider: the paths of both fine-tuning APIs, through the one client.

The current API is ``/fine_tuning/jobs`` (``/{id}``, ``/{id}/events``, ``/{id}/cancel``); the
legacy one, which some compatible servers still serve, is ``/fine-tunes`` with the same three.
A provider's ``fine_tuning_api`` setting picks one, or "auto": the current API first and the
legacy one when the provider answers 404 to it. A job remembers the API it was started on.

Uploads and job creation are never retried (``max_retries=0``): they are not idempotent, and a
retry after a lost answer would leave a second file or job on the provider that Parley does not
know about. Reads, cancels and deletes are retried as every other call.
"""

from __future__ import annotations

from chat.errors import UpstreamError
from chat.upstream import client
from chat.upstream.wire import (
    Endpoint,
    FileInfo,
    JobEvent,
    JobState,
    file_info,
    file_list,
    job_body,
    job_events,
    job_state,
    provider_id,
)

CURRENT = "current"
LEGACY = "legacy"
_JOBS = {CURRENT: "fine_tuning/jobs", LEGACY: "fine-tunes"}
MAX_CONTENT_BYTES = 512 * 1024 * 1024


async def file_upload(endpoint: Endpoint, *, filename: str, content: bytes, purpose: str = "fine-tune") -> FileInfo:
    """``POST /files`` (multipart): the file Parley sends, exactly these bytes."""
    data = await client.request_json(
        endpoint,
        "POST",
        "files",
        files={"file": (filename, content, "application/jsonl")},
        data={"purpose": purpose},
        max_retries=0,
    )
    return file_info(data)


async def file_list_all(endpoint: Endpoint) -> list[FileInfo]:
    return file_list(await client.request_json(endpoint, "GET", "files"))


async def file_retrieve(endpoint: Endpoint, file_id: str) -> FileInfo:
    return file_info(await client.request_json(endpoint, "GET", f"files/{provider_id(file_id, 'file')}"))


async def file_content(endpoint: Endpoint, file_id: str, *, max_bytes: int = MAX_CONTENT_BYTES) -> bytes:
    return await client.request_bytes(endpoint, f"files/{provider_id(file_id, 'file')}/content", max_bytes=max_bytes)


async def file_delete(endpoint: Endpoint, file_id: str) -> bool:
    """``DELETE /files/{id}``: True once the provider no longer has it (a 404 counts as gone)."""
    try:
        data = await client.request_json(endpoint, "DELETE", f"files/{provider_id(file_id, 'file')}")
    except UpstreamError as exc:
        if exc.status == 404:
            return True
        raise
    return bool(isinstance(data, dict) and data.get("deleted", True))


async def model_delete(endpoint: Endpoint, model_id: str) -> bool:
    """``DELETE /models/{id}`` (a fine-tuned model): True once the provider no longer has it."""
    try:
        data = await client.request_json(endpoint, "DELETE", f"models/{provider_id(model_id, 'model')}")
    except UpstreamError as exc:
        if exc.status == 404:
            return True
        raise
    return bool(isinstance(data, dict) and data.get("deleted", True))


async def job_create(
    endpoint: Endpoint, *, api: str, model: str, training_file: str, hyperparameters: dict, suffix: str = ""
) -> tuple[str, JobState]:
    """Start a job; returns the API that took it (``api`` "auto" falls back on a 404) and the job."""
    tries = [CURRENT, LEGACY] if api == "auto" else [api]
    for position, name in enumerate(tries):
        body = job_body(
            api=name, model=model, training_file=training_file, hyperparameters=hyperparameters, suffix=suffix
        )
        try:
            data = await client.request_json(endpoint, "POST", _JOBS[name], body, max_retries=0)
        except UpstreamError as exc:
            if exc.status == 404 and position + 1 < len(tries):
                continue  # this server has no such API: try the next one
            raise
        return name, job_state(data)
    raise AssertionError("unreachable")


def _job_path(api: str, job_id: str, tail: str = "") -> str:
    return f"{_JOBS[api]}/{provider_id(job_id, 'fine-tuning job')}{tail}"


async def job_retrieve(endpoint: Endpoint, *, api: str, job_id: str) -> JobState:
    return job_state(await client.request_json(endpoint, "GET", _job_path(api, job_id)))


async def job_events_list(endpoint: Endpoint, *, api: str, job_id: str) -> list[JobEvent]:
    return job_events(await client.request_json(endpoint, "GET", _job_path(api, job_id, "/events")))


async def job_cancel(endpoint: Endpoint, *, api: str, job_id: str) -> JobState:
    return job_state(await client.request_json(endpoint, "POST", _job_path(api, job_id, "/cancel")))
