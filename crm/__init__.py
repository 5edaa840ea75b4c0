"""The ``crm`` command: the composition root that starts each deployable."""
