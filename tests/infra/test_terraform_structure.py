"""Structure of the Terraform package: shape, references, documentation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hcl_format import format_problems
from terraform_model import (
    MODULE_META_ARGUMENTS,
    TERRAFORM_ROOT,
    Module,
    module_dirs,
    module_id,
)

MODULES = [module_id(path) for path in module_dirs()]
REUSABLE_MODULES = [name for name in MODULES if not name.startswith("examples/")]
EXAMPLES = [name for name in MODULES if name.startswith("examples/")]

HCL_FILES = [
    *sorted(TERRAFORM_ROOT.rglob("*.tf")),
    TERRAFORM_ROOT.parent / "runner-image" / "runner.pkr.hcl",
]


def test_expected_modules_exist() -> None:
    """The root module, four submodules, storage's bucket module, two examples."""
    expected = {
        "root",
        "modules/network",
        "modules/runners",
        "modules/storage",
        "modules/storage/modules/data-bucket",
        "modules/controlplane",
        "examples/complete",
        "examples/existing-vpc",
    }

    assert expected <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_has_the_usual_files(name: str) -> None:
    """Every module has main.tf, variables.tf, outputs.tf, versions.tf and a README."""
    path = TERRAFORM_ROOT if name == "root" else TERRAFORM_ROOT / name

    missing = [
        file
        for file in (
            "main.tf",
            "variables.tf",
            "outputs.tf",
            "versions.tf",
            "README.md",
        )
        if not (path / file).is_file()
    ]

    assert missing == []


@pytest.mark.parametrize("name", MODULES)
def test_module_pins_terraform_and_the_aws_provider(
    name: str, load_module: dict[str, Module]
) -> None:
    """versions.tf requires a Terraform version and a bounded hashicorp/aws range."""
    terraform = load_module[name].files["versions.tf"]["terraform"][0]

    aws = terraform["required_providers"][0]["aws"]

    assert terraform["required_version"].startswith(">=")
    assert aws["source"] == "hashicorp/aws"
    assert "<" in aws["version"]


@pytest.mark.parametrize("name", MODULES)
def test_every_variable_has_a_type_and_a_description(
    name: str, load_module: dict[str, Module]
) -> None:
    """Each variable states its type and says what it is for."""
    variables = load_module[name].variables

    undocumented = [
        var
        for var, body in variables.items()
        if "type" not in body or not str(body.get("description", "")).strip()
    ]

    assert variables, "a module without variables is suspicious"
    assert undocumented == []


@pytest.mark.parametrize("name", MODULES)
def test_every_output_has_a_description(
    name: str, load_module: dict[str, Module]
) -> None:
    """Each output says what it holds."""
    outputs = load_module[name].outputs

    undocumented = [
        out
        for out, body in outputs.items()
        if not str(body.get("description", "")).strip()
    ]

    assert outputs
    assert undocumented == []


@pytest.mark.parametrize("name", MODULES)
def test_every_reference_resolves(name: str, load_module: dict[str, Module]) -> None:
    """var., local., module., data.aws_* and aws_* references name declared blocks."""
    module = load_module[name]

    unresolved = []
    for ref in module.references():
        if ref.kind == "var":
            ok = ref.target[0] in module.variables
        elif ref.kind == "local":
            ok = ref.target[0] in module.locals
        elif ref.kind == "data":
            ok = ref.target in module.data_sources
        elif ref.kind == "resource":
            ok = ref.target in module.resources
        else:
            ok = ref.target[0] in module.module_calls and _module_has_output(
                module, *ref.target, load_module
            )
        if not ok:
            unresolved.append(f"{ref.file}: {ref.kind} {'.'.join(ref.target)}")

    assert unresolved == []


def _module_has_output(
    module: Module, call: str, output: str, load_module: dict[str, Module]
) -> bool:
    source = module.local_module_source(call)
    if source is None:
        return True
    return output in load_module[module_id(source)].outputs


_ADDRESS = re.compile(r"^(?:module\.([\w-]+)\.)?(aws_\w+)\.([\w-]+)$")


@pytest.mark.parametrize("name", MODULES)
def test_moved_blocks_lead_from_old_addresses_to_declared_resources(
    name: str, load_module: dict[str, Module]
) -> None:
    """A moved block's "from" is declared no more; its "to" is, here or in a call."""
    module = load_module[name]

    problems = []
    for block in module.moved:
        old, new = _ADDRESS.match(block["from"]), _ADDRESS.match(block["to"])
        if old is None or new is None or old[1] is not None:
            problems.append(f"cannot read moved {block}")
            continue
        if (old[2], old[3]) in module.resources:
            problems.append(f"{block['from']} is still declared")
        owner = module
        if new[1] is not None:
            if new[1] not in module.module_calls:
                problems.append(f"{block['to']}: no module {new[1]} here")
                continue
            source = module.local_module_source(new[1])
            assert source is not None, f"{new[1]}: modules here are local"
            owner = load_module[module_id(source)]
        if (new[2], new[3]) not in owner.resources:
            problems.append(f"{block['to']} is not declared")

    assert problems == []


@pytest.mark.parametrize("name", MODULES)
def test_every_variable_is_used(name: str, load_module: dict[str, Module]) -> None:
    """A declared variable that nothing reads is dead configuration."""
    module = load_module[name]
    used = {ref.target[0] for ref in module.references() if ref.kind == "var"}

    unused = sorted(set(module.variables) - used)

    assert unused == []


@pytest.mark.parametrize("name", MODULES)
def test_module_calls_pass_declared_and_required_variables(
    name: str, load_module: dict[str, Module]
) -> None:
    """Each call of a local module sets every required variable and no unknown one."""
    module = load_module[name]

    problems = []
    for call, body in module.module_calls.items():
        source = module.local_module_source(call)
        assert source is not None, f"{call}: modules here are local"
        callee = load_module[module_id(source)]
        arguments = set(body) - MODULE_META_ARGUMENTS
        for missing in sorted(callee.required_variables - arguments):
            problems.append(f"module.{call} does not set required {missing}")
        for unknown in sorted(arguments - set(callee.variables)):
            problems.append(f"module.{call} sets undeclared {unknown}")

    assert problems == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_calls_the_root_module(
    name: str, load_module: dict[str, Module]
) -> None:
    """Each example deploys the whole package (source ../..), not a submodule."""
    module = load_module[name]

    sources = {module.local_module_source(call) for call in module.module_calls}

    assert sources == {TERRAFORM_ROOT.resolve()}


@pytest.mark.parametrize("name", REUSABLE_MODULES)
def test_reusable_modules_configure_no_provider(
    name: str, load_module: dict[str, Module]
) -> None:
    """Only examples configure the aws provider; modules inherit it."""
    module = load_module[name]

    providers = [file for file, parsed in module.files.items() if "provider" in parsed]

    assert providers == []


@pytest.mark.parametrize("name", MODULES)
def test_resource_names_do_not_repeat_their_type(
    name: str, load_module: dict[str, Module]
) -> None:
    """Resources are named "this" or by their role, never by a word of their type."""
    module = load_module[name]

    stutter = [
        f"{kind}.{res}"
        for kind, res in module.resources
        if res in kind.removeprefix("aws_").split("_") or res == "main"
    ]

    assert stutter == []


@pytest.mark.parametrize("name", MODULES)
def test_readme_documents_every_input_and_output(
    name: str, load_module: dict[str, Module]
) -> None:
    """The module's README has Inputs and Outputs tables naming each one."""
    module = load_module[name]
    readme = (module.path / "README.md").read_text(encoding="utf-8")
    inputs = _table_names(readme, "Inputs")
    outputs = _table_names(readme, "Outputs")

    assert inputs == set(module.variables)
    assert outputs == set(module.outputs)


def _table_names(readme: str, heading: str) -> set[str]:
    """First-column names (in backticks) of the table under ``## heading``."""
    match = re.search(rf"^## {heading}\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert match, f"README has no '## {heading}' section"
    return set(re.findall(r"^\| `([\w-]+)` \|", match[1], re.M))


@pytest.mark.parametrize(
    "path",
    HCL_FILES,
    ids=[p.relative_to(TERRAFORM_ROOT.parent).as_posix() for p in HCL_FILES],
)
def test_hcl_is_laid_out_as_fmt_would(path: Path) -> None:
    """Two-space indents and aligned "=" in attribute groups, as fmt writes."""
    problems = format_problems(path.read_text(encoding="utf-8"))

    assert problems == []
