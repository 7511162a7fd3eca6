"""Files and fine-tuning jobs through the one client, against the real fake upstream: both APIs,
the automatic fallback on 404 only, multipart uploads, ids checked before they reach a path."""

from __future__ import annotations

import pytest

from chat.errors import UpstreamError
from chat.upstream import client as upstream_client
from chat.upstream import training, wire

pytestmark = [pytest.mark.usefixtures("close_llm_clients")]

HYPER = {"n_epochs": 2, "batch_size": None, "learning_rate_multiplier": 0.5}


@pytest.fixture
def endpoint(fake_upstream):
    return upstream_client.Endpoint(fake_upstream.base_url, api_key="sk-test-TRAINKEY0123456789", connect_timeout=2.0)


async def test_a_file_is_uploaded_as_multipart_listed_read_and_deleted(endpoint, fake_upstream):
    content = b'{"messages": [{"role": "user", "content": "hi"}]}\n'
    info = await training.file_upload(endpoint, filename="train.jsonl", content=content)
    assert (info.filename, info.bytes, info.purpose) == ("train.jsonl", len(content), "fine-tune")
    request = fake_upstream.requests[-1]
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.authorization == "Bearer sk-test-TRAINKEY0123456789"
    assert [f.id for f in await training.file_list_all(endpoint)] == [info.id]
    assert (await training.file_retrieve(endpoint, info.id)).bytes == len(content)
    assert await training.file_content(endpoint, info.id) == content
    assert await training.file_delete(endpoint, info.id)
    assert await training.file_list_all(endpoint) == []
    assert await training.file_delete(endpoint, info.id)  # already gone counts as gone


async def test_an_upload_is_never_retried(endpoint, fake_upstream, no_sleep):
    fake_upstream.script(endpoint="file_upload", status=503)
    with pytest.raises(UpstreamError):
        await training.file_upload(endpoint, filename="t.jsonl", content=b"{}\n")
    assert [r.path for r in fake_upstream.requests] == ["/v1/files"]


async def test_a_job_on_the_current_api_nests_its_hyperparameters_and_moves_over_polls(endpoint, fake_upstream):
    info = await training.file_upload(endpoint, filename="t.jsonl", content=b"a b c\n")
    api, job = await training.job_create(
        endpoint, api="auto", model="gpt-4o-mini", training_file=info.id, hyperparameters=HYPER, suffix="s"
    )
    assert api == "current" and job.status == "validating_files"
    body = fake_upstream.requests[-1].body
    assert body == {
        "model": "gpt-4o-mini",
        "training_file": info.id,
        "hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 0.5},
        "suffix": "s",
    }
    statuses = [(await training.job_retrieve(endpoint, api=api, job_id=job.id)).status for _ in range(3)]
    assert statuses == ["queued", "running", "succeeded"]
    done = await training.job_retrieve(endpoint, api=api, job_id=job.id)
    assert done.trained_tokens == 3 * 2 and done.fine_tuned_model.startswith("ft:gpt-4o-mini:s::")
    events = await training.job_events_list(endpoint, api=api, job_id=job.id)
    assert [e.message for e in events][0].startswith("Created fine-tuning job")  # oldest first


async def test_the_automatic_choice_falls_back_to_the_legacy_api_only_on_404(endpoint, fake_upstream):
    info = await training.file_upload(endpoint, filename="t.jsonl", content=b"x\n")
    fake_upstream.finetuning.apis = {"legacy"}
    api, job = await training.job_create(
        endpoint, api="auto", model="gpt-3.5-turbo", training_file=info.id, hyperparameters=HYPER
    )
    assert api == "legacy" and job.status == "queued"  # the legacy "pending"
    assert fake_upstream.requests[-1].body == {
        "model": "gpt-3.5-turbo",
        "training_file": info.id,
        "n_epochs": 2,
        "learning_rate_multiplier": 0.5,
    }
    state = await training.job_retrieve(endpoint, api=api, job_id=job.id)
    assert state.events and state.trained_tokens is None  # legacy: events embedded, no trained tokens
    cancelled = await training.job_cancel(endpoint, api=api, job_id=job.id)
    assert cancelled.status == "cancelled"
    assert fake_upstream.requests[-1].path == f"/v1/fine-tunes/{job.id}/cancel"


async def test_another_error_of_the_current_api_is_not_a_reason_to_try_the_legacy_one(endpoint, fake_upstream):
    info = await training.file_upload(endpoint, filename="t.jsonl", content=b"x\n")
    fake_upstream.script(endpoint="job_create", status=400, error_message="bad hyperparameters")
    with pytest.raises(UpstreamError) as failed:
        await training.job_create(endpoint, api="auto", model="m", training_file=info.id, hyperparameters=HYPER)
    assert "bad hyperparameters" in failed.value.message
    assert not any(r.path.startswith("/v1/fine-tunes") for r in fake_upstream.requests)


async def test_a_failed_job_is_read_with_its_error(endpoint, fake_upstream):
    fake_upstream.finetuning.outcome = "failed"
    info = await training.file_upload(endpoint, filename="t.jsonl", content=b"x\n")
    api, job = await training.job_create(endpoint, api="current", model="m", training_file=info.id, hyperparameters={})
    for _ in range(3):
        state = await training.job_retrieve(endpoint, api=api, job_id=job.id)
    assert state.status == "failed" and "too few examples" in state.error


async def test_a_fine_tuned_model_is_deleted(endpoint, fake_upstream):
    fake_upstream.models.append("ft:gpt-4o-mini:s::abc")
    assert await training.model_delete(endpoint, "ft:gpt-4o-mini:s::abc")
    assert fake_upstream.requests[-1].method == "DELETE"
    assert "ft:gpt-4o-mini:s::abc" not in await upstream_client.list_models(endpoint)


@pytest.mark.parametrize("bad", ["../models", "file-1/../../x", "a b", "", "x" * 201, "file?x=1", "file#1"])
async def test_an_id_that_could_leave_its_path_is_refused(endpoint, fake_upstream, bad):
    for call in (
        training.file_delete(endpoint, bad),
        training.file_content(endpoint, bad),
        training.model_delete(endpoint, bad),
        training.job_retrieve(endpoint, api="current", job_id=bad),
    ):
        with pytest.raises(UpstreamError) as refused:
            await call
        assert refused.value.code == "upstream_bad_response"
    assert fake_upstream.requests == []


def test_job_states_of_both_apis_read_the_same():
    current = wire.job_state(
        {"id": "ftjob-1", "status": "succeeded", "fine_tuned_model": "ft:x::1", "trained_tokens": 9, "error": {}}
    )
    legacy = wire.job_state({"id": "ft-1", "status": "pending", "fine_tuned_model": None, "events": []})
    assert (current.status, current.trained_tokens, current.fine_tuned_model) == ("succeeded", 9, "ft:x::1")
    assert (legacy.status, legacy.trained_tokens, legacy.fine_tuned_model) == ("queued", None, "")
    assert wire.job_state({"id": "j", "status": "something-new"}).status == "running"
    with pytest.raises(UpstreamError):
        wire.job_state({"status": "succeeded"})
