"""The ``eqarm`` command line: one module per verb, dispatched by ``habitat_eqarm.cli.main``."""
