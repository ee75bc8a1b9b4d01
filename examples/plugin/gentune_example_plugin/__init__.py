"""An example gentune plugin: the ``ppca`` trainer, registered through an entry point."""
