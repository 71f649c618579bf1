"""``traceloom.yml`` at the repository root: what a request body cannot say.

Optional. Every key is optional too::

    setup:                      # once per host, after dependencies, before tests
      - pnpm --filter @shop/app build
      - run: node seed.mjs      # a step with its own folder
        dir: tools
    env:                        # plain variables for the tests
      FEATURE_FLAG: "on"
    secrets:                    # variable: name of a secret stored in TraceLoom
      SHOP_PASSWORD: shop-password
    projects: [chromium]        # Playwright projects to run (default: all)

Secrets are never written here, only named. Any error names the line.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import attrs
import yaml

from controlplane.errors import SourceError

FILE_NAME = "traceloom.yml"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_RESERVED_PREFIXES = ("TRACELOOM_", "PLAYWRIGHT_BLOB_")
# Set by the host or the harness; a suite overriding them would break the run.
_RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "CI", "PLAYWRIGHT_BROWSERS_PATH", "PW_TEST_HTML_REPORT_OPEN"}
)
_KNOWN_KEYS = ("setup", "env", "secrets", "projects")
_STEP_KEYS = frozenset({"run", "dir"})
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


@attrs.frozen
class SetupStep:
    """One shell command, run from ``dir`` (relative to the repository)."""

    run: str
    dir: str = ""
    line: int = 0


@attrs.frozen
class SecretRef:
    """A variable whose value is the secret ``name``, stored in TraceLoom."""

    name: str
    line: int = 0


@attrs.frozen
class RepoConfig:
    env: dict[str, str] = attrs.Factory(dict)
    setup: list[SetupStep] = attrs.Factory(list)
    secrets: dict[str, SecretRef] = attrs.Factory(dict)
    # None: every project of the Playwright config.
    projects: list[str] | None = None
    projects_line: int = 0


class _Invalid(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1


def load(root: Path) -> RepoConfig:
    """Read ``traceloom.yml`` under ``root``; raise SourceError naming the line."""
    path = root / FILE_NAME
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # A link could point anywhere on the control plane: refused too.
        raise SourceError(f"{FILE_NAME} must be a regular file")
    if not path.is_file():
        return RepoConfig()
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise SourceError(f"{FILE_NAME} line {line}: {exc.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"{FILE_NAME}: {exc}") from None
    try:
        return _config(node, root)
    except _Invalid as exc:
        raise SourceError(f"{FILE_NAME} line {exc.line}: {exc}") from None


def _config(node: yaml.Node | None, root: Path) -> RepoConfig:
    if node is None or _is_null(node):
        return RepoConfig()
    sections = _mapping(node, "the top level must be a mapping")
    for key, value in sections.items():
        if key not in _KNOWN_KEYS:
            raise _Invalid(
                value[0],
                f"unknown key {key!r}; traceloom.yml knows {', '.join(_KNOWN_KEYS)}",
            )
    env = _env(sections["env"][1]) if "env" in sections else {}
    secrets = _secrets(sections["secrets"][1]) if "secrets" in sections else {}
    for name, ref in secrets.items():
        if name in env:
            raise SourceError(
                f"{FILE_NAME} line {ref.line}: {name} is set in env and in secrets;"
                " keep one"
            )
    projects = None
    projects_line = 0
    if "projects" in sections:
        projects_node = sections["projects"][1]
        projects_line = projects_node.start_mark.line + 1
        projects = _projects(projects_node)
    return RepoConfig(
        env=env,
        setup=_setup(sections["setup"][1], root) if "setup" in sections else [],
        secrets=secrets,
        projects=projects,
        projects_line=projects_line,
    )


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _mapping(node: yaml.Node, message: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping's entries by key text: ``{key: (key_node, value_node)}``."""
    if not isinstance(node, yaml.MappingNode):
        raise _Invalid(node, message)
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Invalid(key_node, "keys must be plain names")
        key = str(key_node.value)
        if key in entries:
            raise _Invalid(key_node, f"{key!r} is given twice")
        entries[key] = (key_node, value_node)
    return entries


def _text(node: yaml.Node, what: str) -> str:
    """A scalar exactly as written (1.10 stays 1.10), booleans in lower case."""
    if not isinstance(node, yaml.ScalarNode) or _is_null(node):
        raise _Invalid(node, f"{what} must be a plain value")
    if node.tag == _BOOL:
        return "true" if str(node.value).lower() in ("true", "yes", "on") else "false"
    return str(node.value)


def _check_variable(node: yaml.Node, name: str) -> None:
    if not _ENV_NAME.match(name) or not name.isascii():
        raise _Invalid(node, f"{name!r} is not a valid variable name")
    if name.startswith(_RESERVED_PREFIXES) or name in _RESERVED_NAMES:
        raise _Invalid(node, f"variable {name!r} is reserved for TraceLoom")


def _env(node: yaml.Node) -> dict[str, str]:
    if _is_null(node):
        return {}
    env: dict[str, str] = {}
    for name, (key_node, value_node) in _mapping(
        node, "env must be a mapping of variable names to values"
    ).items():
        _check_variable(key_node, name)
        env[name] = _text(value_node, f"env {name}")
    return env


def _secrets(node: yaml.Node) -> dict[str, SecretRef]:
    """``VAR: secret-name`` entries, or a list of names used as variables."""
    if _is_null(node):
        return {}
    pairs: list[tuple[yaml.Node, str, yaml.Node]] = []
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            name = _text(item, "a secret name")
            pairs.append((item, name, item))
    else:
        entries = _mapping(
            node, "secrets must map variable names to secret names, or list names"
        )
        for variable, (key_node, value_node) in entries.items():
            pairs.append((key_node, variable, value_node))
    refs: dict[str, SecretRef] = {}
    for key_node, variable, value_node in pairs:
        _check_variable(key_node, variable)
        if variable in refs:
            raise _Invalid(key_node, f"{variable!r} is given twice")
        secret = _text(value_node, f"secrets {variable}")
        if not SECRET_NAME.match(secret):
            raise _Invalid(
                value_node,
                f"{secret!r} is not a secret name (letters, digits, '_', '-', '.')",
            )
        refs[variable] = SecretRef(secret, value_node.start_mark.line + 1)
    return refs


def _setup(node: yaml.Node, root: Path) -> list[SetupStep]:
    if _is_null(node):
        return []
    if isinstance(node, yaml.ScalarNode):
        return [SetupStep(run=_command(node), line=node.start_mark.line + 1)]
    if not isinstance(node, yaml.SequenceNode):
        raise _Invalid(node, "setup must be a list of shell commands")
    steps = []
    for item in node.value:
        line = item.start_mark.line + 1
        if isinstance(item, yaml.MappingNode):
            entries = _mapping(item, "a setup step is a command or {run, dir}")
            unknown = sorted(set(entries) - _STEP_KEYS)
            if unknown:
                raise _Invalid(
                    entries[unknown[0]][0],
                    f"unknown key {unknown[0]!r} in a setup step (run, dir)",
                )
            if "run" not in entries:
                raise _Invalid(item, "a setup step needs run: COMMAND")
            folder = _folder(entries["dir"][1], root) if "dir" in entries else ""
            steps.append(SetupStep(_command(entries["run"][1]), folder, line))
        else:
            steps.append(SetupStep(run=_command(item), line=line))
    return steps


def _command(node: yaml.Node) -> str:
    command = _text(node, "a setup command")
    if not command.strip():
        raise _Invalid(node, "a setup command is empty")
    if "\0" in command:
        raise _Invalid(node, "a setup command holds a NUL character")
    return command


def _folder(node: yaml.Node, root: Path) -> str:
    text = _text(node, "dir").strip().rstrip("/")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts:
        raise _Invalid(node, f"dir {text!r} must be a folder inside the repository")
    folder = "" if text in ("", ".") else path.as_posix()
    resolved = (root / folder).resolve()
    if not resolved.is_dir() or not resolved.is_relative_to(root.resolve()):
        raise _Invalid(node, f"dir {text!r} is not a folder of the repository")
    return folder


def _projects(node: yaml.Node) -> list[str] | None:
    if _is_null(node):
        return None
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    names: list[str] = []
    for item in items:
        name = _text(item, "a project name")
        if not name.strip():
            raise _Invalid(item, "a project name is empty")
        if name in names:
            raise _Invalid(item, f"project {name!r} is given twice")
        names.append(name)
    if not names:
        raise _Invalid(node, "projects is empty; leave it out to run every project")
    return names
