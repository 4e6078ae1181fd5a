"""isojax: the theory and measurement of isotropy in language-model embeddings on numeric data."""

__version__ = "0.1.0"
