"""The member API: ``/v1/`` in the exact shapes of the OpenAI API, for members' own tokens.

A layer-5 edge (docs/architecture.md): it translates OpenAI requests into calls of the
model-call core (``chat.core.calls``: grants, rate, budget, settlement; ``chat.core.moderation``:
the gate) and the provider's answers back into OpenAI's bodies, chunks and errors. docs/api.md
tells members how to use it; docs/security.md, "Member API", lists what protects it.
"""
