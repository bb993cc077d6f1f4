"""The services of the suite: where each keeps its models and migrations."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from services.settings import SERVICES


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str

    @property
    def models_module(self) -> str:
        return f"{self.package}.models"

    def models(self) -> ModuleType:
        return importlib.import_module(self.models_module)

    @property
    def migrations_dir(self) -> Path:
        package = importlib.import_module(self.package)
        assert package.__file__ is not None
        return Path(package.__file__).parent / "migrations"


SPECS: dict[str, ServiceSpec] = {
    "identity": ServiceSpec("identity", "services.identity"),
    "interpret": ServiceSpec("interpret", "interpret"),
    "consult": ServiceSpec("consult", "consult"),
    "search": ServiceSpec("search", "search"),
    "press": ServiceSpec("press", "services.press"),
}
assert tuple(SPECS) == SERVICES
