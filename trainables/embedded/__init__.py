"""The embedded defaults: small, real, labelled data sets generated on the user's machine
(`registry`: the systems, their sizes and the cache; `sampling`: MD sampling shared by the systems;
one module per system, `xtb` and `emt`) and the foundation model pretrained on each (`pretrain`).
`python -m trainables.build_default` builds one ahead of a study."""

from trainables.embedded.registry import (  # noqa: F401  the registry is this package's face
    DATA_VERSION,
    MANIFEST_NAME,
    SYSTEMS,
    SystemFiles,
    SystemSpec,
    SystemUnavailableError,
    UnknownSizeError,
    UnknownSystemError,
    build_system,
    default_system_name,
    get_system,
    system_files,
)
