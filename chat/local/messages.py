"""Console messages shared by ``manage.py serve`` and ``manage.py local_model``."""

from django.utils.translation import gettext as _


def how_to_add_a_provider() -> str:
    return _(
        "Parley is running without a model: chats will say that no model is configured.\n"
        "To add one, do any of these and restart Parley:\n"
        "  - set OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible service);\n"
        "  - add a provider in the admin console (/admin/, Providers) with its base URL and key,\n"
        "    for example Ollama at http://localhost:11434/v1 with any key;\n"
        "  - run `make run` again on a machine with a C compiler and cmake, to install the bundled local model.\n"
        "See docs/local-models.md."
    )
