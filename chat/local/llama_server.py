"""llama-cpp-python's OpenAI-compatible server, plus the usage chunk that OpenAI clients ask for.

chat.local.server starts this file as the model server's process (``python llama_server.py
--model ... --port ...``, the flags of ``python -m llama_cpp.server``). It runs only there:
it imports llama_cpp, which Parley's own processes never do.

It also serves an embedding model beside the chat model when asked (``--parley_embedding_model
PATH --parley_embedding_alias ID --parley_embedding_n_ctx N``, flags this file takes out of the
command line before llama_cpp.server reads it): the server's own multi-model mode keeps one model
loaded and reloads on every switch, so a chat reply and a document's embeddings in turn would
each reload a model. Here both stay loaded; requests still run one at a time (the server's lock).

Why it exists: llama-cpp-python 0.3.36 ignores ``"stream_options": {"include_usage": true}``,
so a streamed reply carries no token counts and Parley could only estimate usage. This adds
the chunk the OpenAI API defines for it, after the one with ``finish_reason``: same id,
``"choices": []`` and ``"usage": {prompt_tokens, completion_tokens, total_tokens}``, counted the
way the library's own non-streaming replies count them (``len(prompt_tokens)`` and the
generated tokens short of the end-of-generation token).
"""

from __future__ import annotations

import json
import sys

import llama_cpp
from llama_cpp.server import __main__ as server_main
from llama_cpp.server import app as server_app
from llama_cpp.server import model as server_model
from llama_cpp.server.settings import ModelSettings

_generate = llama_cpp.Llama.generate
_publish = server_app.get_event_publisher


def _counting_generate(self, tokens, *args, **kwargs):
    """Llama.generate, noting on the model the prompt length and tokens generated.

    One request runs at a time per model (the server's llama lock), so the last counts on
    the model are the current request's.
    """
    counts = {"prompt_tokens": len(tokens), "completion_tokens": 0}
    self.parley_usage = counts
    for token in _generate(self, tokens, *args, **kwargs):
        # _create_completion stops at an end-of-generation token without keeping it.
        if not llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
            counts["completion_tokens"] += 1
        yield token


def _with_usage_chunk(llama_call):
    def call(llama, **kwargs):
        llama.parley_usage = None
        chunks = llama_call(llama, **kwargs)

        def with_usage():
            last = None
            for chunk in chunks:
                last = chunk
                yield chunk
            counts = llama.parley_usage
            if last is not None and counts is not None:
                yield {
                    "id": last["id"],
                    "object": "chat.completion.chunk",
                    "created": last["created"],
                    "model": last["model"],
                    "choices": [],
                    "usage": {**counts, "total_tokens": counts["prompt_tokens"] + counts["completion_tokens"]},
                }

        return with_usage()

    return call


async def _asks_for_usage(request) -> bool:
    try:
        # FastAPI has read and cached the body already; this parses the cached bytes.
        options = json.loads(await request.body()).get("stream_options") or {}
    except (ValueError, AttributeError):
        return False
    return isinstance(options, dict) and options.get("include_usage") is True


async def get_event_publisher(request, inner_send_chan, body, body_model, llama_call, kwargs):
    if llama_call is llama_cpp.Llama.create_chat_completion and await _asks_for_usage(request):
        llama_call = _with_usage_chunk(llama_call)
    await _publish(
        request=request,
        inner_send_chan=inner_send_chan,
        body=body,
        body_model=body_model,
        llama_call=llama_call,
        kwargs=kwargs,
    )


_EMBEDDING_FLAGS = ("--parley_embedding_model", "--parley_embedding_alias", "--parley_embedding_n_ctx")


def _take_flags(argv: list[str]) -> dict[str, str]:
    """Remove this file's own ``--flag value`` pairs from ``argv`` (in place); return them."""
    taken = {}
    for flag in _EMBEDDING_FLAGS:
        if flag in argv:
            at = argv.index(flag)
            taken[flag] = argv[at + 1]
            del argv[at : at + 2]
    return taken


def _keep_models_loaded(extra: ModelSettings) -> None:
    """LlamaProxy with ``extra`` added after the command line's model, every model loaded once
    and kept (the stock proxy closes one to open another)."""
    proxy = server_model.LlamaProxy
    stock_init = proxy.__init__

    def __init__(self, models):
        stock_init(self, [*models, extra])  # loads models[0], the default (the chat model)
        self._parley_loaded = {self._current_model_alias: self._current_model}
        self(extra.model_alias)  # and the embedding model now, so a bad file fails the start

    def __call__(self, model=None):
        alias = model if model in self._model_settings_dict else self._default_model_alias
        llama = self._parley_loaded.get(alias)
        if llama is None:
            llama = self.load_llama_from_model_settings(self._model_settings_dict[alias])
            self._parley_loaded[alias] = llama
        self._current_model, self._current_model_alias = llama, alias
        return llama

    def free(self):
        for llama in self._parley_loaded.values():
            llama.close()
        self._parley_loaded.clear()
        self._current_model = None

    proxy.__init__ = __init__
    proxy.__call__ = __call__
    proxy.free = free


def main() -> None:
    flags = _take_flags(sys.argv)
    if flags.get("--parley_embedding_model"):
        n_ctx = int(flags.get("--parley_embedding_n_ctx", "512"))
        _keep_models_loaded(
            ModelSettings(
                model=flags["--parley_embedding_model"],
                model_alias=flags.get("--parley_embedding_alias"),
                embedding=True,
                # One input is at most the model's positions long; the server cuts it there.
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                # One thread: on this project's 2-core machine, busy with daphne and the chat
                # model, two threads embedded 3x slower than one (324 vs 991 tokens/s at load 5,
                # docs/local-models.md); indexing runs in the background anyway.
                n_threads=1,
                n_threads_batch=1,
                verbose=False,
            )
        )
    llama_cpp.Llama.generate = _counting_generate
    # create_chat_completion looks the publisher up in its module when a request streams.
    server_app.get_event_publisher = get_event_publisher
    server_main.main()  # parses sys.argv: the flags of `python -m llama_cpp.server`


if __name__ == "__main__":
    sys.exit(main())
