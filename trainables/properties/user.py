"""The structures and references of a user's own data: ASE-readable files named in a space's
`[properties]` table (`search_spaces.PROPERTY_FILES`). There is no labeller to compute references
with, so only the data's own references exist: the profile's stored energies and a reference MD
trajectory (its bond lengths: the MD temperature has no reference without the labeller's own MD);
the same trajectory gives the liquid evaluator its structure (partial g(r), bond angles); an
evaluator without its structure or reference is skipped with a note."""

from __future__ import annotations

from typing import Mapping

import ase.io

from trainables.properties.base import Measurement, PropertySettings, PropertyStructures
from trainables.properties import liquid
from trainables.properties.md import reference_from_trajectory
from trainables.properties.profile import reference_from_labels


def user_structures(files: Mapping[str, str]) -> PropertyStructures:
    """`minimum_file` and `cubic_cell_file` (the last frame of each), `profile_file` (every frame, in order)."""
    def last_frame(key: str):
        return ase.io.read(files[key], -1) if key in files else None

    profile = tuple(ase.io.read(files["profile_file"], ":")) if "profile_file" in files else ()
    return PropertyStructures(minimum=last_frame("minimum_file"), cubic_cell=last_frame("cubic_cell_file"),
                              profile=profile)


def user_references(files: Mapping[str, str], structures: PropertyStructures,
                    settings: PropertySettings) -> dict[str, Measurement]:
    """The MD and liquid references from `md_reference_file` (atoms in the minimum's order) and the
    profile's stored energies, for the evaluators in `settings.evaluators` that have them."""
    references: dict[str, Measurement] = {}
    if "md_reference_file" in files and structures.minimum is not None:
        frames = ase.io.read(files["md_reference_file"], ":")
        if "md" in settings.evaluators:
            references["md"] = reference_from_trajectory(frames, structures.minimum)
        if "liquid" in settings.evaluators and structures.minimum.pbc.all():
            references["liquid"] = liquid.reference_from_trajectory(frames, settings)
    if "energy_profile" in settings.evaluators and len(structures.profile) >= 2:
        references["energy_profile"] = reference_from_labels(structures.profile)
    return references
