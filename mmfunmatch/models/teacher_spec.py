"""Each teacher of a distiller config as one object, read in one place by
the distiller, its data preprocessor, the config check and the tools.

``model.teachers`` is a list, or a dict of named teachers. The dict form
merges by name under config inheritance (mmengine replaces lists whole), so
a derived config changes one field of one teacher, or adds a teacher to an
ensemble, in one line::

    model = dict(teachers=dict(bit=dict(checkpoint='pets.npz', size=128)))
"""
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Union

Size = Union[int, Sequence[int]]
FIELDS = ('model', 'checkpoint', 'mean', 'std', 'size')


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher.

    Args:
        key (str): Its config key, e.g. ``model.teachers.0`` or
            ``model.teachers.bit`` (what ``--cfg-options`` takes).
        model (dict): An mmpretrain classifier config.
        checkpoint (str, optional): Its weight file; None gives random
            weights (tests only).
        mean (Sequence[float], optional): Its input mean, 0-255 RGB.
        std (Sequence[float], optional): Its input std.
        size (int | (h, w), optional): Its input size.
    """
    key: str
    model: dict
    checkpoint: Optional[str] = None
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    size: Optional[Size] = None

    @property
    def view(self) -> dict:
        """What the data preprocessor needs: mean, std and size (the ones
        that are set)."""
        return {k: getattr(self, k) for k in ('mean', 'std', 'size')
                if getattr(self, k) is not None}


def teacher_specs(teachers: Union[Sequence[Mapping], Mapping[str, Mapping]]
                  ) -> List[TeacherSpec]:
    """The teachers of a config, in order (a dict keeps its order: the
    base config's teachers first, then the ones a derived config adds)."""
    items = (list(teachers.items()) if isinstance(teachers, Mapping) else
             list(enumerate(teachers or [])))
    specs = []
    for name, t in items:
        key = f'model.teachers.{name}'
        if not isinstance(t, Mapping) or 'model' not in t:
            raise ValueError(
                f'{key} needs a "model" config, e.g. dict(model=dict('
                f'type="TimmClassifier", ...), checkpoint="teacher.pth")')
        unknown = sorted(set(t) - set(FIELDS))
        if unknown:
            raise ValueError(f'{key}: unknown keys {unknown}; a teacher has '
                             f'{list(FIELDS)}')
        specs.append(TeacherSpec(key=key, **dict(t)))
    return specs
