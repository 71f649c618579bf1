"""``traceloom.yml``: optional plain env for the tests, refused clearly when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.engine import repoconfig
from controlplane.errors import SourceError


def write_config(root: Path, text: str) -> None:
    (root / repoconfig.FILE_NAME).write_text(text, encoding="utf-8")


def test_missing_file_gives_empty_env(tmp_path: Path) -> None:
    """A repository without traceloom.yml runs with no extra env."""
    config = repoconfig.load(tmp_path)

    assert config.env == {}


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "env:\n", "env: {}\n"],
    ids=["empty-file", "comment-only", "env-null", "env-empty-map"],
)
def test_empty_config_gives_empty_env(tmp_path: Path, text: str) -> None:
    """An empty file or an empty env section means no extra env."""
    write_config(tmp_path, text)

    config = repoconfig.load(tmp_path)

    assert config.env == {}


def test_env_values_are_stringified(tmp_path: Path) -> None:
    """Every env value becomes a string; booleans in shell-style lower case."""
    write_config(
        tmp_path,
        "env:\n"
        "  FEATURE_X: true\n"
        "  FEATURE_Y: False\n"
        "  RETRIES: 3\n"
        "  RATIO: 0.5\n"
        "  BASE_URL: https://staging.example.invalid\n"
        "  GREETING: 'Grüße, world'\n"
        "  QUOTED_NUMBER: '42'\n"
        "  _PRIVATE: x\n",
    )

    config = repoconfig.load(tmp_path)

    assert config.env == {
        "FEATURE_X": "true",
        "FEATURE_Y": "false",
        "RETRIES": "3",
        "RATIO": "0.5",
        "BASE_URL": "https://staging.example.invalid",
        "GREETING": "Grüße, world",
        "QUOTED_NUMBER": "42",
        "_PRIVATE": "x",
    }
    assert all(isinstance(v, str) for v in config.env.values())


def test_number_like_values_keep_the_text_they_were_written_with(
    tmp_path: Path,
) -> None:
    """An env value is the text in the file, not YAML's reading of it as a number."""
    write_config(tmp_path, "env:\n  APP_VERSION: 1.10\n  MODE: 010\n  N: 1_000\n")

    config = repoconfig.load(tmp_path)

    assert config.env == {"APP_VERSION": "1.10", "MODE": "010", "N": "1_000"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("env:\n  A: 1\n B: 2\n", 3, id="bad-indent"),
        pytest.param("env:\n\tA: 1\n", 2, id="tab"),
        pytest.param("env: a: b\n", 1, id="nested-colon"),
        pytest.param("env:\n  A: 1\n  B: 2\n  C: [1, 2\n  D: 4\n", 5, id="unclosed"),
    ],
)
def test_malformed_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    """A YAML syntax error ends the run with the file name and the line at fault."""
    write_config(tmp_path, text)

    with pytest.raises(SourceError) as caught:
        repoconfig.load(tmp_path)

    assert str(caught.value).startswith(f"{repoconfig.FILE_NAME} line {line}: ")


def test_undecodable_file_is_a_source_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused as a SourceError, not a crash."""
    (tmp_path / repoconfig.FILE_NAME).write_bytes(b"env:\n  A: \xff\n")

    with pytest.raises(SourceError, match=repoconfig.FILE_NAME):
        repoconfig.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("- env\n", 1, "top level must be a mapping", id="top-list"),
        pytest.param("just text\n", 1, "top level must be a mapping", id="top-str"),
        pytest.param("envs:\n  A: 1\n", 1, "unknown key 'envs'", id="unknown-key"),
        pytest.param("env: {}\nbrowsers: {}\n", 2, "unknown key", id="extra-key"),
        pytest.param("env: [A, B]\n", 1, "env must be a mapping", id="env-list"),
        pytest.param("env: A=1\n", 1, "env must be a mapping", id="env-string"),
        pytest.param("env:\n  1ABC: x\n", 2, "not a valid variable", id="digit"),
        pytest.param("env:\n  A-B: x\n", 2, "not a valid variable", id="dash"),
        pytest.param("env:\n  A.B: x\n", 2, "not a valid variable", id="dot"),
        pytest.param("env:\n  'A B': x\n", 2, "not a valid variable", id="space"),
        pytest.param("env:\n  '': x\n", 2, "not a valid variable", id="empty-name"),
        pytest.param("env:\n  É: x\n", 2, "not a valid variable", id="non-ascii"),
        pytest.param("env:\n  1: x\n", 2, "not a valid variable", id="number-name"),
        pytest.param("env:\n  TRACELOOM_RUN: x\n", 2, "is reserved", id="traceloom"),
        pytest.param(
            "env:\n  PLAYWRIGHT_BROWSERS_PATH: /x\n", 2, "is reserved", id="browsers"
        ),
        pytest.param("env:\n  PATH: /nonexistent\n", 2, "is reserved", id="path"),
        pytest.param("env:\n  HOME: /x\n", 2, "is reserved", id="home"),
        pytest.param("env:\n  CI: ''\n", 2, "is reserved", id="ci"),
        pytest.param("env:\n  A:\n", 2, "must be a plain value", id="null-value"),
        pytest.param("env:\n  A: [1, 2]\n", 2, "must be a plain value", id="list"),
        pytest.param("env:\n  A: {b: 1}\n", 2, "must be a plain value", id="map"),
        pytest.param("env:\n  A: 1\n  A: 2\n", 3, "given twice", id="env-twice"),
        pytest.param("setup: {a: 1}\n", 1, "list of shell commands", id="setup-map"),
        pytest.param("setup:\n  - ''\n", 2, "is empty", id="setup-empty"),
        pytest.param("setup:\n  - [a]\n", 2, "plain value", id="setup-nested"),
        pytest.param("setup:\n  - dir: .\n", 2, "needs run", id="step-no-run"),
        pytest.param(
            "setup:\n  - run: x\n    cwd: a\n", 3, "unknown key 'cwd'", id="step-key"
        ),
        pytest.param(
            "setup:\n  - run: x\n    dir: ../up\n", 3, "inside the", id="step-up"
        ),
        pytest.param(
            "setup:\n  - run: x\n    dir: nowhere\n", 3, "not a folder", id="no-dir"
        ),
        pytest.param("secrets: token\n", 1, "secrets must map", id="secrets-str"),
        pytest.param("secrets:\n  A: 'a b'\n", 2, "not a secret name", id="bad-name"),
        pytest.param("secrets:\n  PATH: p\n", 2, "is reserved", id="secret-path"),
        pytest.param("secrets:\n  - 1X\n", 2, "not a valid variable", id="list-var"),
        pytest.param(
            "env:\n  A: x\nsecrets:\n  A: a\n", 4, "in env and in secrets", id="both"
        ),
        pytest.param("projects: []\n", 1, "projects is empty", id="no-projects"),
        pytest.param("projects: [a, a]\n", 1, "given twice", id="project-twice"),
        pytest.param("projects:\n  - {a: 1}\n", 2, "plain value", id="project-map"),
    ],
)
def test_invalid_config_is_refused_with_the_line_and_reason(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """A config that parses but says something wrong is refused at its line."""
    write_config(tmp_path, text)

    with pytest.raises(SourceError) as caught:
        repoconfig.load(tmp_path)

    assert str(caught.value).startswith(f"{repoconfig.FILE_NAME} line {line}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize("value", ["[]", "false", "0", "''"])
def test_falsy_non_mapping_env_is_refused(tmp_path: Path, value: str) -> None:
    """env must be a mapping even when the wrong value happens to be empty."""
    write_config(tmp_path, f"env: {value}\n")

    with pytest.raises(SourceError, match="env must be a mapping"):
        repoconfig.load(tmp_path)


def test_setup_secrets_and_projects_are_read_with_their_lines(tmp_path: Path) -> None:
    """Commands as strings or {run, dir}; secrets as a map or a list of names."""
    (tmp_path / "app").mkdir()
    write_config(
        tmp_path,
        "setup:\n"
        "  - pnpm --filter app build\n"
        "  - run: node seed.mjs --count 3\n"
        "    dir: app/\n"
        "env:\n"
        "  MODE: ci\n"
        "secrets:\n"
        "  SHOP_PASSWORD: shop-password\n"
        "  API_TOKEN: api.token-v2\n"
        "projects: [chromium, 'Mobile Safari']\n",
    )

    config = repoconfig.load(tmp_path)

    assert config.setup == [
        repoconfig.SetupStep("pnpm --filter app build", "", 2),
        repoconfig.SetupStep("node seed.mjs --count 3", "app", 3),
    ]
    assert config.env == {"MODE": "ci"}
    assert config.secrets == {
        "SHOP_PASSWORD": repoconfig.SecretRef("shop-password", 8),
        "API_TOKEN": repoconfig.SecretRef("api.token-v2", 9),
    }
    assert config.projects == ["chromium", "Mobile Safari"]
    assert config.projects_line == 10


def test_a_single_command_and_a_list_of_secret_names_are_accepted(
    tmp_path: Path,
) -> None:
    """``setup: make`` is one step; listed secrets use their names as variables."""
    write_config(
        tmp_path, "setup: make build\nsecrets:\n  - NPM_TOKEN\nprojects: chromium\n"
    )

    config = repoconfig.load(tmp_path)

    assert config.setup == [repoconfig.SetupStep("make build", "", 1)]
    assert config.secrets == {"NPM_TOKEN": repoconfig.SecretRef("NPM_TOKEN", 3)}
    assert config.projects == ["chromium"]


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_config_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    """A folder or a link named traceloom.yml is an error, not an absent file."""
    path = tmp_path / repoconfig.FILE_NAME
    if kind == "folder":
        path.mkdir()
    else:
        (tmp_path / "elsewhere.yml").write_text("env: {A: '1'}\n")
        path.symlink_to(tmp_path / "elsewhere.yml")

    with pytest.raises(SourceError, match="must be a regular file"):
        repoconfig.load(tmp_path)
