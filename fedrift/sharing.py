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

log = logging.getLogger(__name__)
_TAPE_LIMIT = 4096


class _Line:
    """A real model, its position (updates applied), the pending updates, and its members."""

    def __init__(self, model: Any, applied: int = 0, tape: list | None = None) -> None:
        self.model = model
        self.applied = applied
        self.tape: list[tuple[list[float], Any]] = list(tape or [])
        self.members: weakref.WeakSet[SharedModel] = weakref.WeakSet()


class SharedModel:
    """A member of a line: behaves as a model that learned the tape up to its position."""

    def __init__(self, sharing: ModelSharing, line: _Line, pos: int) -> None:
        self._sharing, self._line, self._pos = sharing, line, pos
        line.members.add(self)

    def learn_one(self, x: list[float], y) -> None:
        line = self._line
        i = self._pos - line.applied
        if i < len(line.tape):
            tx, ty = line.tape[i]
            if (tx is x or tx == x) and ty == y:
                self._pos += 1
                return
            self._sharing.detach(self)  # learns something else: its own line from here
            line = self._line
        line.tape.append((x, y))
        self._pos += 1
        if len(line.tape) >= _TAPE_LIMIT:  # nobody predicted for long: apply what every member learned
            self._sharing.advance(line, min(m._pos for m in line.members))

    def predict_one(self, x):
        return self.resolve().predict_one(x)

    def predict_proba_one(self, x):
        return self.resolve().predict_proba_one(x)

    def resolve(self):
        """The real model in this member's state (read it, never change it)."""
        if self._pos > self._line.applied:
            self._sharing.advance(self._line, self._pos)
        return self._line.model

    def __deepcopy__(self, memo):
        return copy.deepcopy(self.resolve(), memo)

    def __reduce__(self):
        return copy.deepcopy, (self.resolve(),)


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
            except Exception as exc:  # as a host's guarded call: the update is skipped, the model kept
                log.warning("shared model: learn_one failed: %r", exc)
        self.updates_applied += n
        line.applied, line.tape = pos, line.tape[n:]

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
