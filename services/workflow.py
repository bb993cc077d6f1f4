"""Workflows as explicit state machines: the allowed transitions live in one table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

S = TypeVar("S", bound=StrEnum)


class TransitionNotAllowed(Exception):
    def __init__(self, machine: str, current: str, action: str, current_label: str | None = None,
                 action_label: str | None = None) -> None:
        super().__init__(f"{machine}: cannot {action} from state {current}")
        self.machine = machine
        self.current = current
        self.action = action
        self.current_label = current_label
        self.action_label = action_label


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    name: str
    transitions: Mapping[str, tuple[frozenset[S], S]]
    """action -> (states it may start from, state it leads to)"""
    state_labels: Mapping[str, str] = field(default_factory=dict)
    action_labels: Mapping[str, str] = field(default_factory=dict)
    """What people read in a refusal (当前状态“审核中”不能执行“公开答复”)."""

    def _refusal(self, current: S, action: str) -> TransitionNotAllowed:
        return TransitionNotAllowed(self.name, current.value, action, self.state_labels.get(current.value),
                                    self.action_labels.get(action))

    def target(self, current: S, action: str) -> S:
        try:
            sources, target = self.transitions[action]
        except KeyError:
            raise self._refusal(current, action) from None
        if current not in sources:
            raise self._refusal(current, action)
        return target

    def allowed_actions(self, current: S) -> list[str]:
        return [action for action, (sources, _) in self.transitions.items() if current in sources]


class ContentProblem(Exception):
    """Input that breaks a business rule; ``errors`` maps field names to messages (answered 422)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors


def problem(field: str, message: str) -> ContentProblem:
    return ContentProblem({field: [message]})


# -- the review workflow: drafted, reviewed, published (policies, interpretations, press responses) ----


class ReviewState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    PUBLISHED = "published"
    WITHDRAWN = "withdrawn"


REVIEW_STATE_LABELS: dict[str, str] = {
    "draft": "草稿", "submitted": "已提交", "approved": "已审核", "published": "已发布", "withdrawn": "已撤回",
}
REVIEW_ACTION_LABELS: dict[str, str] = {
    "submit": "提交", "return": "退回", "approve": "审核通过", "publish": "发布", "withdraw": "撤回", "revise": "修订",
}

_R = ReviewState
REVIEW_WORKFLOW: StateMachine[ReviewState] = StateMachine(
    "content",
    {
        "submit": (frozenset({_R.DRAFT}), _R.SUBMITTED),
        "return": (frozenset({_R.SUBMITTED, _R.APPROVED}), _R.DRAFT),
        "approve": (frozenset({_R.SUBMITTED}), _R.APPROVED),
        "publish": (frozenset({_R.APPROVED}), _R.PUBLISHED),
        "withdraw": (frozenset({_R.PUBLISHED}), _R.WITHDRAWN),
        "revise": (frozenset({_R.PUBLISHED, _R.WITHDRAWN}), _R.DRAFT),
    },
    state_labels=REVIEW_STATE_LABELS,
    action_labels=REVIEW_ACTION_LABELS,
)
"""The one table of allowed transitions for reviewed content: interpret's policies and interpretations
and the press office's responses (回应关切 / 媒体聚焦) alike."""
