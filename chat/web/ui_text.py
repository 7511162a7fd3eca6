"""Every string the chat page's JavaScript shows, translated on the server.

The catalog is rendered into the page as a JSON data block (``<script type="application/json"
id="i18n">``): data, not script, so the Content-Security-Policy allows it. Keys are the English
source strings the modules pass to ``t()`` and ``nt()`` (static/app/util.js); a test checks that
every string in the modules is listed here.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop, ngettext

STRINGS = (
    # static/app/voice.js
    gettext_noop("Dictate"),
    gettext_noop("Stop recording"),
    gettext_noop("Recording… %(seconds)s s"),
    gettext_noop("Recording for translation… %(seconds)s s"),
    gettext_noop("Transcribing…"),
    gettext_noop("No speech was heard."),
    gettext_noop("Parley cannot use the microphone. Allow it in the browser's site settings."),
    gettext_noop("Reply read aloud"),
    gettext_noop("Read aloud"),
    gettext_noop("Stop reading"),
    gettext_noop("This reply could not be played."),
    # Folders and presets (sidebar.js, main.js) and the shared page (shared.js).
    gettext_noop("A name is required."),
    gettext_noop("Collections of this preset not shared with you are not searched (%(count)s)."),
    gettext_noop("Delete folder %(name)s"),
    gettext_noop("Show more"),
    gettext_noop("Show more in folder %(name)s"),
    gettext_noop("Drag conversations here, or use “Move to folder”."),
    gettext_noop("Folder name"),
    gettext_noop("Folder “%(name)s” deleted; its conversations are kept."),
    gettext_noop("Move to folder"),
    gettext_noop("New folder"),
    gettext_noop("No preset"),
    gettext_noop("Preset “%(name)s” saved."),
    gettext_noop("Preset: %(name)s"),
    gettext_noop("Rename folder"),
    gettext_noop("Rename folder %(name)s"),
    gettext_noop("They said"),
    gettext_noop("Allow use for training"),
    gettext_noop("Allowed for training: take back"),
    gettext_noop("Used for training: sent to the provider"),
    gettext_noop("This conversation may now be used to fine-tune a model. Admins will read it to build training data."),
    gettext_noop("This conversation will not be used for training."),
    gettext_noop("Previous version"),
    gettext_noop("Next version"),
    gettext_noop("Fork"),
    gettext_noop("Continue from this answer"),
    gettext_noop("Continue from answer %(number)s"),
    gettext_noop("Answers to pick from"),
    gettext_noop("Answer %(number)s"),
    gettext_noop("%(count)s relevant passages of your documents did not fit and were left out."),
    gettext_noop("%(pages)s pages"),
    gettext_noop("Failed: %(reason)s"),
    gettext_noop("Indexing…"),
    gettext_noop("Reading…"),
    gettext_noop("Ready"),
    gettext_noop("Remove %(name)s"),
    gettext_noop("Source %(number)s"),
    gettext_noop("Uploading…"),
    gettext_noop("Wait until your files are ready, or remove them."),
    gettext_noop("Waiting to be read…"),
    gettext_noop("%(field)s must be a number between %(min)s and %(max)s."),
    gettext_noop("%(remaining)s of %(budget)s left this month"),
    gettext_noop("%(remaining)s of %(budget)s tokens left this month"),
    gettext_noop("%(tokens)s tokens used this month"),
    gettext_noop("%(total)s tokens (%(prompt)s in, %(completion)s out)"),
    gettext_noop("(estimated)"),
    gettext_noop("At most four stop sequences."),
    gettext_noop("Cancel"),
    gettext_noop("Change settings"),
    gettext_noop("Connection lost. Reconnecting…"),
    gettext_noop("Conversation title"),
    gettext_noop("Copied"),
    gettext_noop("Copy"),
    gettext_noop("Copy code"),
    gettext_noop("Default model"),
    gettext_noop("Delete"),
    gettext_noop("Dismiss"),
    gettext_noop("Edit"),
    gettext_noop("Edit message"),
    gettext_noop("Edit your message"),
    gettext_noop("Get a reply"),
    gettext_noop("Image: %(name)s"),
    gettext_noop("New chat"),
    gettext_noop("No conversations match “%(query)s”."),
    gettext_noop("Older"),
    gettext_noop("Older messages are not shown. Export the conversation to see all of it."),
    gettext_noop("Parley could not be reached. Check your connection."),
    gettext_noop("Parley is writing"),
    gettext_noop("Parley said"),
    gettext_noop("Pin"),
    gettext_noop("Pinned"),
    gettext_noop("Please sign in again."),
    gettext_noop("Previous 7 days"),
    gettext_noop("Regenerate"),
    gettext_noop("Rename"),
    gettext_noop("Save and send"),
    gettext_noop("Searching…"),
    gettext_noop("Best matches"),
    gettext_noop("Similar in meaning"),
    gettext_noop("Something went wrong. Please try again."),
    gettext_noop("That conversation no longer exists."),
    gettext_noop("The connection dropped while sending. Check the conversation list, then send again if needed."),
    gettext_noop("The provider's content filter ended this reply early."),
    gettext_noop("The reply failed: %(reason)s"),
    gettext_noop("The reply was cut off at the maximum reply length."),
    gettext_noop("Theme: dark"),
    gettext_noop("Theme: light"),
    gettext_noop("Theme: system"),
    gettext_noop("These settings apply to the chat you are about to start."),
    gettext_noop("These settings apply to this conversation."),
    gettext_noop("This message is too long."),
    gettext_noop("This reply was blocked by moderation (%(categories)s)."),
    gettext_noop("This reply was blocked by moderation."),
    gettext_noop("This reply was interrupted before it finished. The text so far is kept."),
    gettext_noop("Today"),
    gettext_noop("Try again"),
    gettext_noop("Unpin"),
    gettext_noop("Untitled conversation"),
    gettext_noop("Usage"),
    gettext_noop("Yesterday"),
    gettext_noop("You are offline. Parley will reconnect; try again in a moment."),
    gettext_noop("You are offline. Your message will be sent when Parley reconnects."),
    gettext_noop("You can try again in %(seconds)s seconds."),
    gettext_noop("You said"),
    gettext_noop("You stopped this reply. The text so far is kept."),
    gettext_noop("Your conversations will appear here."),
    gettext_noop("unknown error"),
    gettext_noop("“%(title)s” and all its messages will be deleted. This cannot be undone."),
    # Images for vision models and the "Collections" control (static/app/attachments.js).
    gettext_noop("%(model)s cannot read images. Pick a model that accepts images, or send the message without them."),
    gettext_noop("Files: %(count)s"),
    gettext_noop("Loading…"),
    gettext_noop("Stop searching %(name)s"),
    gettext_noop("You have no collections yet."),
    gettext_noop("shared by %(owner)s"),
    # Images (static/app/images.js)
    gettext_noop("Clear mask"),
    gettext_noop("Describe the change"),
    gettext_noop("Describe the change."),
    gettext_noop("Describe the image"),
    gettext_noop("Download"),
    gettext_noop("Edit image"),
    gettext_noop("Image %(number)s"),
    gettext_noop("Image model"),
    gettext_noop("Image"),
    gettext_noop("More like this"),
    gettext_noop("Open full size"),
    gettext_noop("Paint over the part to change (optional), then say what to change."),
    gettext_noop("Paint the area to change"),
    gettext_noop("Revised prompt:"),
)


# The strings of static/app/library.js (the prompt library, share links, the library dialog),
# sent with that module when it is first loaded (chat.web.library.library_text), not with every
# page: the page's first load stays within its weight (tests/browser/test_page_weight.py).
LIBRARY_STRINGS = (
    gettext_noop(
        "Anyone with the link can read a copy of this conversation as it is now. Later messages are not shared."
    ),
    gettext_noop("Close"),
    gettext_noop("Copy link"),
    gettext_noop("Create link"),
    gettext_noop("Delete preset “%(name)s”"),
    gettext_noop("Delete prompt “%(name)s”"),
    gettext_noop("Edit preset “%(name)s”"),
    gettext_noop("Edit prompt “%(name)s”"),
    gettext_noop("Collections the preset searches"),
    gettext_noop("Collections of this preset not shared with you: %(count)s. Changing the collections removes them."),
    gettext_noop("Model"),
    gettext_noop("System prompt"),
    gettext_noop("Parameters (JSON)"),
    gettext_noop('The chat settings, for example {"temperature": 0.2, "max_tokens": 800}.'),
    gettext_noop("The parameters must be a JSON object."),
    gettext_noop("Searches %(names)s"),
    gettext_noop("%(count)s not shared with you"),
    gettext_noop("You have no collections."),
    gettext_noop("Fill in “%(title)s”"),
    gettext_noop("Folder"),
    gettext_noop("Insert"),
    gettext_noop("Loading…"),
    gettext_noop(
        "Members of this Parley signed in with their account can read a copy of this conversation as it is now. Later messages are not shared."  # noqa: E501
    ),
    gettext_noop("Move"),
    gettext_noop("Name"),
    gettext_noop("New prompt"),
    gettext_noop("No folder"),
    gettext_noop("No presets yet."),
    gettext_noop("No prompt matches “%(query)s”."),
    gettext_noop("No prompts yet."),
    gettext_noop("Presets"),
    gettext_noop("Presets and prompts"),
    gettext_noop("Prompt text"),
    gettext_noop("Prompt title"),
    gettext_noop("Prompts"),
    gettext_noop("Revoke"),
    gettext_noop("Revoke link to “%(title)s”"),
    gettext_noop("Save"),
    gettext_noop("Save a preset from the chat settings. Presets your admin published to your groups are listed too."),
    gettext_noop("Save prompt"),
    gettext_noop("Share conversation"),
    gettext_noop("Share link"),
    gettext_noop("The link is revoked: it no longer opens."),
    gettext_noop(
        "Type / in the message box to insert one. Write variables as {{name}}: you fill them in when you insert the prompt."  # noqa: E501
    ),
    gettext_noop("You have no share links."),
    gettext_noop("Your prompt library is empty. Add prompts under Presets and prompts."),
    gettext_noop("Your share links"),
    gettext_noop("published to your group"),
    gettext_noop("shared"),
    gettext_noop("shared with your group"),
)


# The strings of static/app/collections.js (the Collections page), on that page only.
COLLECTION_STRINGS = (
    gettext_noop("Remove"),
    gettext_noop("Replace"),
    gettext_noop("Replace %(name)s"),
    gettext_noop("Shared with you by %(owner)s. Only its owner can change it."),
    gettext_noop(
        "“%(name)s” and all its files will be deleted. Conversations that search it stop doing so. This cannot be undone."  # noqa: E501
    ),
)


def _translated(texts) -> dict:
    # Only what the language changes: t() shows the English key itself when it has no entry,
    # so an English page carries no catalog to speak of (the HTML is sent uncompressed, and
    # every byte of it counts in the first load, tests/browser/test_page_weight.py).
    entries = {}
    for text in texts:
        translation = _(text)
        if translation != text:
            entries[text] = translation
    return entries


def library_catalog() -> dict:
    return _translated(LIBRARY_STRINGS)


def collections_catalog() -> dict:
    """The Collections page's strings: the page's shared ones (net.js, attachments.js) and its own."""
    return _translated((*STRINGS, *COLLECTION_STRINGS))


# The strings the modules pass to nt(), singular first.
PLURALS = ("%(count)s earlier message was not sent: context limit",)


def catalog() -> dict:
    entries: dict = _translated(STRINGS)
    # Plurals travel as [singular, plural] for the current language (en and zh-hans need no more).
    singular, plural = (
        "%(count)s earlier message was not sent: context limit",
        "%(count)s earlier messages were not sent: context limit",
    )
    forms = [
        ngettext(
            "%(count)s earlier message was not sent: context limit",
            "%(count)s earlier messages were not sent: context limit",
            count,
        )
        for count in (1, 2)
    ]
    if forms != [singular, plural]:
        entries[singular] = forms
    return entries
