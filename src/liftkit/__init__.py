"""liftkit: lightweight fine-tuning for text classification, measured honestly.

The public API is small: `load_config` + `run` to fine-tune, `load` to predict, `load_many` to
predict with several classifiers that share one base model.
"""

from liftkit.version import __version__


def __getattr__(name: str):  # lazy: `import liftkit` stays fast; torch loads only where a call needs it
    if name == "load":
        from liftkit.predict import load

        return load
    if name == "load_many":
        from liftkit.many import load_many

        return load_many
    if name == "run":
        from liftkit.pipeline import run

        return run
    if name == "load_config":
        from liftkit.config import load_config

        return load_config
    raise AttributeError(f"module 'liftkit' has no attribute {name!r}")


__all__ = ["__version__", "load", "load_config", "load_many", "run"]
