"""Terraform modules read with python-hcl2, as plain data for the tests.

A module is a folder of ``*.tf`` files. python-hcl2 turns each file into
nested dicts and lists; expressions stay strings such as
``"${var.name}-runner"``. References are found in those strings with the
patterns below, which is enough for the plain Terraform this repository
writes (no references hidden inside literal text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_ROOT = REPO_ROOT / "terraform"

# Arguments every module block takes besides the module's own variables.
MODULE_META_ARGUMENTS = frozenset(
    {"source", "version", "count", "for_each", "providers", "depends_on"}
)

_OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)
_VAR_REF = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
_LOCAL_REF = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
_MODULE_REF = re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?\.(\w+)")
_DATA_REF = re.compile(r"(?<![\w.])data\.(aws_\w+)\.([A-Za-z_][\w-]*)")
_RESOURCE_REF = re.compile(r"(?<![\w.])(aws_\w+)\.([A-Za-z_][\w-]*)")


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one HCL file into python-hcl2's dict form, string quotes removed."""
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=_OPTIONS)


def iter_strings(value: Any) -> Iterator[str]:
    """Yield every string inside a parsed value, keys of dicts included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from iter_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_strings(item)


def unwrap(expression: Any) -> Any:
    """Return ``x`` for ``"${x}"``; anything else unchanged."""
    if (
        isinstance(expression, str)
        and expression.startswith("${")
        and expression.endswith("}")
        and expression.count("${") == 1
    ):
        return expression[2:-1]
    return expression


@dataclass(frozen=True)
class Reference:
    """One reference found in an expression of a module."""

    kind: str  # var, local, module, data or resource
    target: tuple[str, ...]
    file: str


@dataclass
class Module:
    """Every top-level block of one Terraform module folder."""

    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Module:
        """Read every ``*.tf`` file of ``path``."""
        module = cls(path=path)
        for tf in sorted(path.glob("*.tf")):
            module.files[tf.name] = load_hcl(tf)
        return module

    @property
    def name(self) -> str:
        return self.path.relative_to(TERRAFORM_ROOT).as_posix()

    def _blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for file_name, parsed in self.files.items():
            for block in parsed.get(kind, []):
                yield file_name, block

    def _labelled(self, kind: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self._blocks(kind):
            for name, body in block.items():
                assert name not in found, f"{self.name}: {kind} {name} declared twice"
                found[name] = body
        return found

    def _typed(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for _, block in self._blocks(kind):
            for type_name, named in block.items():
                for name, body in named.items():
                    key = (type_name, name)
                    assert key not in found, f"{self.name}: {kind} {key} declared twice"
                    found[key] = body
        return found

    @cached_property
    def variables(self) -> dict[str, dict[str, Any]]:
        return self._labelled("variable")

    @cached_property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return self._labelled("output")

    @cached_property
    def module_calls(self) -> dict[str, dict[str, Any]]:
        return self._labelled("module")

    @cached_property
    def resources(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self._typed("resource")

    @cached_property
    def data_sources(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self._typed("data")

    @cached_property
    def locals(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for _, block in self._blocks("locals"):
            found.update(block)
        return found

    @property
    def required_variables(self) -> set[str]:
        return {name for name, body in self.variables.items() if "default" not in body}

    def resources_of(self, type_name: str) -> dict[str, dict[str, Any]]:
        """Resources of one type, by name."""
        return {
            name: body
            for (kind, name), body in self.resources.items()
            if kind == type_name
        }

    @cached_property
    def moved(self) -> list[dict[str, str]]:
        """``moved`` blocks as {"from": address, "to": address}, ``${}`` removed."""
        return [
            {key: unwrap(address) for key, address in block.items()}
            for _, block in self._blocks("moved")
        ]

    def references(self) -> list[Reference]:
        """Every var/local/module/data/resource reference in the module.

        ``moved`` blocks are left out: their addresses name where resources
        used to be, which by design no longer resolves.
        """
        found: list[Reference] = []
        for file_name, parsed in self.files.items():
            expressions = {kind: v for kind, v in parsed.items() if kind != "moved"}
            for text in iter_strings(expressions):
                if "${" not in text:
                    continue
                found.extend(_references_in(text, file_name))
        return found

    def local_module_source(self, call: str) -> Path | None:
        """Folder of a module call whose source is a local path, else None."""
        source = self.module_calls[call]["source"]
        if not source.startswith((".", "/")):
            return None
        return (self.path / source).resolve()


def _references_in(text: str, file_name: str) -> Iterator[Reference]:
    for match in _VAR_REF.finditer(text):
        yield Reference("var", (match[1],), file_name)
    for match in _LOCAL_REF.finditer(text):
        yield Reference("local", (match[1],), file_name)
    for match in _MODULE_REF.finditer(text):
        yield Reference("module", (match[1], match[2]), file_name)
    for match in _DATA_REF.finditer(text):
        yield Reference("data", (match[1], match[2]), file_name)
    for match in _RESOURCE_REF.finditer(text):
        yield Reference("resource", (match[1], match[2]), file_name)


def module_dirs() -> list[Path]:
    """The root module, every submodule and every example, in a fixed order.

    Submodules are those under ``modules/`` and the internal ones nested in
    them (``modules/storage/modules/data-bucket``).
    """
    dirs = [TERRAFORM_ROOT]
    for submodule in _subfolders(TERRAFORM_ROOT / "modules"):
        dirs += [submodule, *_subfolders(submodule / "modules")]
    dirs += _subfolders(TERRAFORM_ROOT / "examples")
    return dirs


def _subfolders(path: Path) -> list[Path]:
    """Folders directly inside ``path`` (none if it does not exist), sorted."""
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def module_id(path: Path) -> str:
    """Short test id of a module folder: "root", "modules/network", ..."""
    relative = path.relative_to(TERRAFORM_ROOT).as_posix()
    return "root" if relative == "." else relative
