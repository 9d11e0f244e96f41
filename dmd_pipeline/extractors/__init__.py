"""extractors subpackage."""
