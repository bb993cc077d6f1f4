"""Workflows as explicit state machines: the allowed transitions live in one table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)


class TransitionNotAllowed(Exception):
    def __init__(self, machine: str, current: str, action: str) -> None:
        super().__init__(f"{machine}: cannot {action} from state {current}")
        self.machine = machine
        self.current = current
        self.action = action


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    name: str
    transitions: Mapping[str, tuple[frozenset[S], S]]
    """action -> (states it may start from, state it leads to)"""

    def target(self, current: S, action: str) -> S:
        try:
            sources, target = self.transitions[action]
        except KeyError:
            raise TransitionNotAllowed(self.name, current.value, action) from None
        if current not in sources:
            raise TransitionNotAllowed(self.name, current.value, action)
        return target

    def allowed_actions(self, current: S) -> list[str]:
        return [action for action, (sources, _) in self.transitions.items() if current in sources]
