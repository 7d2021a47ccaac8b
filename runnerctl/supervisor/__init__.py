"""The supervisor tree: a root that forks one long-lived worker per runner slot.

``root`` supervises (spawn, reap, reconcile, drain, stop), ``worker`` keeps one slot's
runner alive, ``janitor`` does GitHub housekeeping in its own process, ``channel``
carries typed messages between them, ``states`` names a slot's states, ``intensity``
turns crash loops into backoff, ``plan`` decides what a reconcile pass does, and
``status`` publishes and shows status.json. docs/architecture.md tells the story.
"""
