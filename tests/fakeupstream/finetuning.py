"""Files and fine-tuning jobs in the fake upstream: both the current and the legacy API.

Files: ``POST /v1/files`` (multipart: ``file`` and ``purpose``), ``GET /v1/files``,
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``.
Jobs: ``POST /v1/fine_tuning/jobs``, ``GET .../{id}``, ``GET .../{id}/events``,
``POST .../{id}/cancel``, and the same under the legacy ``/v1/fine-tunes``. ``DELETE
/v1/models/{id}`` deletes a fine-tuned model (and takes it out of ``GET /v1/models``).

A job moves one step at each ``GET`` of it: created "validating_files" (legacy: "pending"),
then "queued", "running", and then the server's ``finetune_outcome`` ("succeeded", the
default, or "failed"). A succeeded job names ``ft:<base>:parley::<id>`` and reports as trained
tokens the whitespace-separated words of its file times its epochs; a failed one carries an
error. Every step adds an event.

Operation names, for ``server.script(endpoint=..., status=500)``: ``file_upload``,
``file_list``, ``file_retrieve``, ``file_content``, ``file_delete``, ``job_create``,
``job_retrieve``, ``job_events``, ``job_cancel``, ``model_delete``. Server switches:
``finetune_apis`` (the APIs served: {"current", "legacy"} by default; a missing one answers
404), ``finetune_outcome``.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import re
import time

_counter = itertools.count(1)
_STEPS = ["queued", "running"]
_FILE = re.compile(r"^/v1/files(?:/([^/]+)(/content)?)?$")
_JOB = re.compile(r"^/v1/(fine_tuning/jobs|fine-tunes)(?:/([^/]+)(/events|/cancel)?)?$")


def operation(method: str, path: str) -> str | None:
    """The operation a request is, or None when it is not about files, jobs or model deletion."""
    if match := _FILE.match(path):
        file_id, content = match.groups()
        if file_id is None:
            return {"POST": "file_upload", "GET": "file_list"}.get(method)
        if content:
            return "file_content" if method == "GET" else None
        return {"GET": "file_retrieve", "DELETE": "file_delete"}.get(method)
    if match := _JOB.match(path):
        _family, job_id, tail = match.groups()
        if job_id is None:
            return "job_create" if method == "POST" else None
        if tail == "/events":
            return "job_events" if method == "GET" else None
        if tail == "/cancel":
            return "job_cancel" if method == "POST" else None
        return "job_retrieve" if method == "GET" else None
    if method == "DELETE" and path.startswith("/v1/models/"):
        return "model_delete"
    return None


def parse_multipart(content_type: str, raw: bytes) -> dict:
    """``{name: (filename or None, bytes)}`` of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return parts


class FineTuning:
    """The state of files, jobs and deleted models (one per fake server)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, dict] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.deleted_models: list[str] = []
        self.apis = {"current", "legacy"}
        self.outcome = "succeeded"

    # --- answers: (status, body) or (status, bytes) for file content ------------------------
    def answer(self, op: str, method: str, path: str, headers: dict, raw: bytes, body, server) -> tuple[int, object]:
        if op.startswith("file_"):
            return self._file(op, path, headers, raw)
        if op == "model_delete":
            model_id = path.removeprefix("/v1/models/")
            if model_id not in server.models:
                return 404, _error(f"The model '{model_id}' does not exist", "invalid_request_error", "model_not_found")
            server.models.remove(model_id)
            self.deleted_models.append(model_id)
            return 200, {"id": model_id, "object": "model", "deleted": True}
        match = _JOB.match(path)
        api = "current" if match.group(1) == "fine_tuning/jobs" else "legacy"
        if api not in self.apis:
            return 404, _error("Unknown request URL", "invalid_request_error")
        if op == "job_create":
            return self._create(api, body)
        job = self.jobs.get(match.group(2) or "")
        if job is None or job["api"] != api:
            return 404, _error("No such fine-tuning job", "invalid_request_error")
        if op == "job_retrieve":
            self._advance(job, server)
            return 200, self._shape(job)
        if op == "job_events":
            data = [self._event_shape(job, event) for event in job["events"]]
            if api == "current":
                data.reverse()  # newest first, as OpenAI lists them
            return 200, {"object": "list", "data": data, "has_more": False}
        if op == "job_cancel":
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return 400, _error("Job has already completed", "invalid_request_error")
            job["status"] = "cancelled"
            self._event(job, "Fine-tuning job cancelled.")
            return 200, self._shape(job)
        return 404, _error("Unknown request URL", "invalid_request_error")

    def _file(self, op: str, path: str, headers: dict, raw: bytes) -> tuple[int, object]:
        match = _FILE.match(path)
        file_id = match.group(1)
        if op == "file_upload":
            content_type = headers.get("content-type", "")
            if not content_type.startswith("multipart/form-data"):
                return 400, _error("Expected multipart/form-data", "invalid_request_error")
            parts = parse_multipart(content_type, raw)
            if "file" not in parts or parts["file"][0] is None:
                return 400, _error("Missing file", "invalid_request_error")
            purpose = parts.get("purpose", (None, b""))[1].decode()
            if purpose not in ("fine-tune", "assistants", "batch"):
                return 400, _error(f"Invalid purpose: {purpose}", "invalid_request_error")
            filename, content = parts["file"]
            file_id = f"file-{next(_counter):06d}"
            self.files[file_id] = {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            }
            self.contents[file_id] = content
            return 200, self.files[file_id]
        if op == "file_list":
            return 200, {"object": "list", "data": list(self.files.values())}
        if file_id not in self.files:
            return 404, _error(f"No such File object: {file_id}", "invalid_request_error")
        if op == "file_retrieve":
            return 200, self.files[file_id]
        if op == "file_content":
            return 200, self.contents[file_id]
        del self.files[file_id]
        self.contents.pop(file_id, None)
        return 200, {"id": file_id, "object": "file", "deleted": True}

    def _create(self, api: str, body) -> tuple[int, object]:
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return 400, _error("'model' is required", "invalid_request_error")
        file_id = body.get("training_file")
        if file_id not in self.files:
            return 400, _error(f"invalid training_file: {file_id}", "invalid_request_error", "invalid_file")
        hyper = body.get("hyperparameters") if api == "current" else body
        hyper = hyper if isinstance(hyper, dict) else {}
        epochs = hyper.get("n_epochs") if isinstance(hyper.get("n_epochs"), int) else 3
        job_id = f"{'ftjob' if api == 'current' else 'ft'}-{next(_counter):06d}"
        job = {
            "id": job_id,
            "api": api,
            "model": body["model"],
            "training_file": file_id,
            "status": "validating_files" if api == "current" else "pending",
            "n_epochs": epochs,
            "batch_size": hyper.get("batch_size"),
            "learning_rate_multiplier": hyper.get("learning_rate_multiplier"),
            "suffix": body.get("suffix") or "parley",
            "created_at": int(time.time()),
            "fine_tuned_model": None,
            "trained_tokens": None,
            "error": None,
            "events": [],
            "step": 0,
        }
        self.jobs[job_id] = job
        self._event(job, f"Created fine-tuning job: {job_id}")
        return 200, self._shape(job)

    def _advance(self, job: dict, server) -> None:
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return
        if job["step"] < len(_STEPS):
            job["status"] = _STEPS[job["step"]]
            job["step"] += 1
            self._event(job, f"Job {job['status']}.")
            return
        if self.outcome == "failed":
            job["status"] = "failed"
            job["error"] = {
                "code": "invalid_training_file",
                "message": "The job failed: the training file has too few examples.",
                "param": "training_file",
            }
            self._event(job, "Fine-tuning job failed.", level="error")
            return
        words = len(self.contents.get(job["training_file"], b"").split())
        job["status"] = "succeeded"
        job["trained_tokens"] = words * job["n_epochs"]
        job["fine_tuned_model"] = f"ft:{job['model']}:{job['suffix']}::{job['id'].split('-')[-1]}"
        server.models.append(job["fine_tuned_model"])
        self._event(job, "New fine-tuned model created.")
        self._event(job, "The job has successfully completed.")

    def _event(self, job: dict, message: str, level: str = "info") -> None:
        job["events"].append(
            {"id": f"ftevent-{next(_counter):06d}", "created_at": int(time.time()), "level": level, "message": message}
        )

    def _event_shape(self, job: dict, event: dict) -> dict:
        kind = "fine_tuning.job.event" if job["api"] == "current" else "fine-tune-event"
        return {"object": kind, **event}

    def _shape(self, job: dict) -> dict:
        if job["api"] == "current":
            return {
                "id": job["id"],
                "object": "fine_tuning.job",
                "model": job["model"],
                "created_at": job["created_at"],
                "status": job["status"],
                "fine_tuned_model": job["fine_tuned_model"],
                "trained_tokens": job["trained_tokens"],
                "training_file": job["training_file"],
                "hyperparameters": {
                    "n_epochs": job["n_epochs"],
                    "batch_size": job["batch_size"] or "auto",
                    "learning_rate_multiplier": job["learning_rate_multiplier"] or "auto",
                },
                "error": job["error"] or {},
                "result_files": [],
            }
        legacy_status = "pending" if job["status"] in ("validating_files", "queued") else job["status"]
        return {
            "id": job["id"],
            "object": "fine-tune",
            "model": job["model"],
            "created_at": job["created_at"],
            "status": legacy_status,
            "fine_tuned_model": job["fine_tuned_model"],
            "hyperparams": {"n_epochs": job["n_epochs"], "batch_size": job["batch_size"]},
            "training_files": [self.files.get(job["training_file"], {"id": job["training_file"]})],
            "events": [self._event_shape(job, event) for event in job["events"]],
        }


def _error(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
