"""Numeric language models: the study's architectures by name (`recipes`), training of one or many runs at
once (`training`), self-describing checkpoints (`checkpoint`), the train-or-load cache (`cache`), forecasting
(`forecast`), the study's train-and-evaluate of an ensemble (`ensemble`) and what the CLI's `train` and
`embed --data` do (`commands`)."""

from isojax.models import cache, checkpoint, commands, forecast, recipes, training
from isojax.models.cache import RunSpec, train_or_load
from isojax.models.checkpoint import load, save
from isojax.models.recipes import ARCHITECTURES, model_config
from isojax.models.training import SERIAL, Engine, Run, TrainConfig, Trained, default_engine, train, train_many

__all__ = ["cache", "checkpoint", "commands", "forecast", "recipes", "training", "ARCHITECTURES", "model_config",
           "TrainConfig", "Run", "Engine", "SERIAL", "default_engine", "Trained", "train", "train_many", "RunSpec",
           "train_or_load", "load", "save"]
