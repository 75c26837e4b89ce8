"""The structures and references of the embedded systems (`trainables.embedded.SYSTEMS`), one entry
per system in `EMBEDDED_PROPERTIES`:

- "biphenyl-xtb": the minimum is biphenyl relaxed by GFN2-xTB (tblite), the profile the ring-ring
  dihedral scan (test set "dihedral", its stored xTB energies the reference); xTB's vibrations.
- "cu3au-emt": the minimum is the 32-atom L1_2 Cu3Au supercell at EMT's zero pressure (MD, phonons
  at Gamma, Nose-Hoover MD's structure and diffusion), the cubic cell its 4-atom conventional cell
  (acoustic phonons near Gamma and the dispersion from its supercells, elastic constants, the
  stacking-fault path on a slab cut from it); EMT's references.
For MD, the reference is the labeller's own MD under the same protocol (start, thermostat, steps
and seed). The labeller's references take seconds to minutes: compute them once and cache them
(they are plain JSON-able values).
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from typing import Callable

import ase.io
from ase.calculators.calculator import Calculator

from trainables.embedded import SystemFiles
from trainables.embedded import emt as embedded_emt
from trainables.embedded import xtb as embedded_xtb
from trainables.errors import ConfigError
from trainables.properties.base import Measurement, PropertySettings, PropertyStructures
from trainables.properties.profile import reference_from_labels
from trainables.properties.registry import compute_references


@dataclass(frozen=True)
class EmbeddedProperties:
    """How to evaluate one embedded system: its structures from its built files, and its labeller
    (a "module:factory" path, imported when called)."""

    structures: Callable[[SystemFiles], PropertyStructures]
    labeller: str

    def reference_calculator(self) -> Calculator:
        return pkgutil.resolve_name(self.labeller)()


def _biphenyl_structures(files: SystemFiles) -> PropertyStructures:
    return PropertyStructures(minimum=embedded_xtb.relaxed(embedded_xtb.biphenyl_guess()),
                              profile=tuple(ase.io.read(files.tests["dihedral"], ":")))


def _cu3au_structures(files: SystemFiles) -> PropertyStructures:
    supercell = embedded_emt.cu3au_supercell()  # 2x2x2 conventional cells
    unit_cell = embedded_emt.l12_cu3au_cell(supercell.cell.lengths()[0] / 2)
    return PropertyStructures(minimum=supercell, cubic_cell=unit_cell)


EMBEDDED_PROPERTIES: dict[str, EmbeddedProperties] = {
    "biphenyl-xtb": EmbeddedProperties(_biphenyl_structures, "trainables.embedded.xtb:xtb_calculator"),
    "cu3au-emt": EmbeddedProperties(_cu3au_structures, "ase.calculators.emt:EMT"),
}


def embedded_properties(system: str) -> EmbeddedProperties:
    """The entry of embedded `system`; an unknown name raises with the list of known ones."""
    if system not in EMBEDDED_PROPERTIES:
        raise ConfigError(f"no property evaluation for system {system!r}; known: {', '.join(EMBEDDED_PROPERTIES)}")
    return EMBEDDED_PROPERTIES[system]


def embedded_structures(files: SystemFiles) -> PropertyStructures:
    """The evaluated structures of a built embedded system."""
    return embedded_properties(files.name).structures(files)


def embedded_references(files: SystemFiles, structures: PropertyStructures,
                        settings: PropertySettings) -> dict[str, Measurement]:
    """Reference measurements: the labeller's (`compute_references`, its MD included) and the
    profile's stored energies."""
    references = compute_references(embedded_properties(files.name).reference_calculator(), structures, settings)
    if "energy_profile" in settings.evaluators and len(structures.profile) >= 2:
        references["energy_profile"] = reference_from_labels(structures.profile)
    return references
