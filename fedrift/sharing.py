"""One model object for replicas that learn the same stream: the simulator's main saving.

With shared training every replica of a model learns every labelled request, in the same order,
from the same initial state, and so do the baselines' copies of the pool members: ``K + 1``
identical models, each paying for every ``learn_one``. ``ModelSharing.share`` puts copies whose
pickled states are equal on one *line*: a real model and a tape of the updates learned by the
furthest member and not yet applied. Each member (a ``SharedModel``) knows its position on the
tape; an update a member learns is compared with the tape's entry at its position (the same
features and label, or it leaves the line with a copy of its own state); a prediction applies the
tape up to the asking member's position. A member left behind by that (it would need an older
state) is moved to a copy first, so every member always answers exactly as its own model would.

Only models whose predictions leave them unchanged may share (``ModelFamily.pure_predict``: River's
SWINN neighbour search, for one, draws from its generator on every query). An update that fails
when the tape is applied fails for every member: each member's next ``learn_one`` raises it (after
taping its own update), so a guarded caller counts the same errors, up to the tape's lag later.

The Kafka hosts keep one model each (they run in separate processes); this saving is the
in-memory pipeline's, and ``tests/unit/test_sharing.py`` checks it changes no result.

>>> from fedrift.core.models import FAMILIES
>>> fam = FAMILIES["linear"]
>>> sharing = ModelSharing()
>>> a, b = sharing.share([fam.build(fam.defaults), fam.build(fam.defaults)])
>>> for m in (a, b):
...     m.learn_one([0.5, 1.0], 1)
>>> a.predict_one([0.5, 1.0]) == b.predict_one([0.5, 1.0]), sharing.updates_applied
(True, 1)
"""

from __future__ import annotations

import copy
import hashlib
import logging
import pickle
import weakref
from collections import defaultdict
from typing import Any

from river.base import Classifier

from fedrift.core.learners import RiverClassifier

log = logging.getLogger(__name__)
_TAPE_LIMIT = 4096


def _same_update(a: tuple[list, Any], b: tuple[list, Any]) -> bool:
    """Equal features and label, element types included (``True == 1`` but River keeps both)."""
    (ax, ay), (bx, by) = a, b
    return type(ay) is type(by) and ay == by and _same_features(ax, bx)


def _same_features(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(type(u) is type(v) and (u == v or (u != u and v != v)) for u, v in zip(a, b, strict=True))


def _predicts_argmax(model) -> bool:
    """Whether ``model.predict_one`` is River's default, the most probable class of
    ``predict_proba_one``, so a cached probability answers it too."""
    if type(model).predict_one is not RiverClassifier.predict_one:
        return False
    if type(model).predict_proba_one is not RiverClassifier.predict_proba_one:
        return False
    estimator: Any = model.estimator
    return type(estimator).predict_one is Classifier.predict_one


class _Line:
    """A real model, its position (updates applied), the pending updates, and its members."""

    def __init__(self, model: Any, applied: int = 0, tape: list | None = None) -> None:
        self.model = model
        self.applied = applied
        self.tape: list[tuple[list[float], Any]] = list(tape or [])
        self.members: weakref.WeakSet[SharedModel] = weakref.WeakSet()
        self.last_proba: tuple[int, list, dict] | None = None  # (applied, features, probabilities)
        self.argmax_of_proba = _predicts_argmax(model)  # copies of the line keep the model's type

    def proba(self, x: list) -> dict:
        """The model's probabilities for ``x`` in its current state, computed once per state and
        features: the baselines and the replicas ask the same question of the same state."""
        x = list(x)  # once: the model reads it after the key is taken
        hit = self.last_proba
        if hit is not None and hit[0] == self.applied and _same_features(hit[1], x):
            return hit[2]
        proba = self.model.predict_proba_one(x)
        self.last_proba = (self.applied, x, proba)
        return proba


class SharedModel:
    """A member of a line: behaves as a model that learned the tape up to its position."""

    def __init__(self, sharing: ModelSharing, line: _Line, pos: int) -> None:
        self._sharing, self._line, self._pos = sharing, line, pos
        self._owed: list[Exception] = []  # failures of updates this member taped, found since
        line.members.add(self)

    def learn_one(self, x: list[float], y) -> None:
        update = (list(x), y)  # a copy: the caller may reuse its list
        line = self._line
        i = self._pos - line.applied
        if i < len(line.tape) and _same_update(line.tape[i], update):
            self._pos += 1
        else:
            if i < len(line.tape):
                self._sharing.detach(self)  # learns something else: its own line from here
                line = self._line
            line.tape.append(update)
            self._pos += 1
            if len(line.tape) >= _TAPE_LIMIT:  # nobody predicted for long
                self._sharing.trim(line)
        if self._owed:
            raise self._owed.pop(0)

    def predict_one(self, x):
        model = self.resolve()
        if not self._line.argmax_of_proba:
            return model.predict_one(x)
        proba = self._line.proba(x)
        return max(proba, key=lambda c: proba[c]) if proba else None  # River's Classifier.predict_one

    def predict_proba_one(self, x):
        self.resolve()
        return copy.copy(self._line.proba(x))  # a copy of the same type: the caller may change it

    def resolve(self):
        """The real model in this member's state (read it, never change it)."""
        if self._pos > self._line.applied:
            self._sharing.advance(self._line, self._pos)
        return self._line.model

    def __deepcopy__(self, memo):
        # a fresh memo: members of one line copied together must not come out as one model
        return copy.deepcopy(self.resolve())

    def __reduce__(self):
        # the state as bytes now: the line's model moves on after the pickle is taken
        return pickle.loads, (pickle.dumps(self.resolve(), protocol=pickle.HIGHEST_PROTOCOL),)


class ModelSharing:
    """Groups identical models onto lines, and counts what sharing saved and cost."""

    def __init__(self) -> None:
        self.updates_applied = 0  # learn_one calls made on real models
        self.forks = 0  # copies made for members that left a line

    def share(self, models: list) -> list:
        """``models`` with every group of equal plain models (same pickled state) replaced by members
        of one new line; members of existing lines and unpicklable models are returned as given."""
        groups: dict[bytes, list[int]] = defaultdict(list)
        for i, m in enumerate(models):
            digest = _digest(m)
            if digest is not None:
                groups[digest].append(i)
        out = list(models)
        for idx in groups.values():
            if len(idx) > 1:
                line = _Line(models[idx[0]])
                for i in idx:
                    out[i] = SharedModel(self, line, 0)
        return out

    def join(self, member, model):
        """``model`` as a new member of ``member``'s line, if both are in the same initial state (the
        line has learned nothing yet and their pickles are equal); otherwise ``model`` itself."""
        if not isinstance(member, SharedModel):
            return model
        line = member._line
        if line.applied or line.tape or _digest(line.model) != _digest(model):
            return model
        return SharedModel(self, line, 0)

    def advance(self, line: _Line, pos: int) -> None:
        """Apply the tape up to ``pos``; members behind it move to a copy of the line first."""
        behind = [m for m in line.members if m._pos < pos]
        if behind:
            self._fork(line, behind, len(line.tape))
        n = pos - line.applied
        for x, y in line.tape[:n]:
            try:
                line.model.learn_one(x, y)
            except Exception as exc:  # every member taped this update: each is told on its next learn
                log.debug("shared model: learn_one failed: %r", exc)
                for m in line.members:
                    m._owed.append(exc)
        self.updates_applied += n
        line.applied, line.tape = pos, line.tape[n:]

    def trim(self, line: _Line) -> None:
        """Apply the first half of a full tape; members that have not learned that far (e.g. one
        that only predicts) move to a copy, so one idle member cannot make the tape grow."""
        target = line.applied + len(line.tape) // 2
        self.advance(line, min((m._pos for m in line.members if m._pos >= target), default=target))

    def detach(self, member: SharedModel) -> None:
        """Give ``member`` a line of its own at its position (it is about to learn something else)."""
        line = member._line
        self._fork(line, [member], member._pos - line.applied)

    def _fork(self, line: _Line, members: list[SharedModel], keep: int) -> None:
        self.forks += 1
        new = _Line(copy.deepcopy(line.model), line.applied, line.tape[:keep])
        for m in members:
            line.members.discard(m)
            m._line = new
            new.members.add(m)


def _digest(model) -> bytes | None:
    if isinstance(model, SharedModel):
        return None
    try:
        return hashlib.blake2b(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)).digest()
    except Exception:  # a model that cannot be pickled is simply not shared
        return None
