"""The package's layout rules: one place for each default, one version, public names across modules."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path

from typer.testing import CliRunner

import genrify
from genrify import defaults

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "genrify"
TESTS = REPO / "tests"


# --- defaults in one place ------------------------------------------------------------------------


def test_the_architecture_list_is_the_registrys():
    from genrify.models import architectures

    # defaults.py keeps a plain copy so that the CLI's help needs no torch; it must not drift.
    assert sorted(defaults.ARCHITECTURES) == architectures()
    assert defaults.DEFAULT_ARCH in defaults.ARCHITECTURES
    assert all(isinstance(about, str) and about for about in defaults.ARCHITECTURES.values())


def test_the_objects_that_hold_defaults_take_them_from_defaults_py():
    from genrify.audio.decode import DEFAULT_SAMPLE_RATE
    from genrify.audio.features import FeatureParams
    from genrify.learn.config import TrainConfig

    params = FeatureParams()
    assert (params.sample_rate, params.n_mels, params.n_fft, params.hop_length) == (
        defaults.SAMPLE_RATE, defaults.N_MELS, defaults.N_FFT, defaults.HOP_LENGTH)
    assert DEFAULT_SAMPLE_RATE == defaults.SAMPLE_RATE
    config = TrainConfig()
    assert config.chunk_frames == defaults.CHUNK_FRAMES and config.arch == defaults.DEFAULT_ARCH


def test_defaults_py_imports_nothing():
    # The CLI reads it at start-up: it must stay plain constants.
    tree = ast.parse((SRC / "defaults.py").read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_help_texts_are_formatted_from_the_defaults(monkeypatch):
    from genrify.cli import app

    monkeypatch.setenv("COLUMNS", "400")  # one option per line: no word is wrapped apart
    runner = CliRunner()
    train = runner.invoke(app, ["train", "--help"]).output
    for name in defaults.ARCHITECTURES:
        assert name in train
    extract = runner.invoke(app, ["extract", "--help"]).output
    for value in (defaults.SAMPLE_RATE, defaults.N_MELS, defaults.N_FFT, defaults.HOP_LENGTH):
        assert f"default {value}," in extract


# --- one version --------------------------------------------------------------------------------


def test_the_version_comes_from_pyproject_only():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert genrify.__version__ == importlib.metadata.version("genrify") == declared
    # No second copy to forget: the package holds no version literal.
    assert declared not in (SRC / "__init__.py").read_text()


# --- split concerns -------------------------------------------------------------------------------


def test_the_web_package_keeps_its_public_names():
    from genrify import web

    for name in ("create_app", "serve", "make_server", "ModelEntry", "describe"):
        assert name in web.__all__ and callable(getattr(web, name))


def test_the_tensorflow_weight_port_lives_with_the_conversion_script():
    from genrify.models import musicnn

    assert not hasattr(musicnn, "convert_tf_variables") and not hasattr(musicnn, "tf_variable_map")
    port = (REPO / "scripts" / "musicnn_port.py").read_text()
    assert "def convert_tf_variables(" in port and "def tf_variable_map(" in port


def test_models_hold_networks_and_weights_and_classify_reads_the_files():
    from genrify.classify import musicnn_tags
    from genrify.models import musicnn

    for name in ("preprocess_file", "tag_song"):
        assert not hasattr(musicnn, name) and callable(getattr(musicnn_tags, name))
    assert not hasattr(musicnn.Tagger, "tag_file") and callable(musicnn_tags.tag_file)


def test_many_files_have_one_entry_the_classification_service():
    from genrify.classify import predict, service
    from genrify.store import extract

    assert not hasattr(predict, "classify_paths") and callable(service.classify_library)
    for module, name in ((service, "classify_remote"), (service, "classify_on_dask"), (extract, "extract_on_dask")):
        assert not hasattr(module, name), name


# --- public names across modules -----------------------------------------------------------------

#: Uses of another module's private names that other parts of issue 13 are removing; the test
#: fails on any new one, and on a listed one that is gone (so the list only shrinks).
KNOWN_PRIVATE_USES: set[str] = set()


def _private_uses(source: str, name: str) -> set[str]:
    """``name: module._private`` for each private name of a genrify module that ``source`` imports
    (``from genrify.x import _y``) or reads off an imported module (``x._y``)."""
    tree = ast.parse(source, filename=name)
    found: set[str] = set()
    modules: dict[str, str] = {}  # local name -> the genrify module or object it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "genrify":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add(f"{name}: {node.module}.{alias.name}")
                else:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "genrify" and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.add(f"{name}: {modules[node.value.id]}.{node.attr}")
    return found


def test_the_private_name_check_sees_both_forms():
    source = (
        "from genrify.audio.features import _cached_transform, log_mel\n"
        "from genrify.audio import decode as audio\n"
        "import genrify.web.app as web_app\n"
        "audio._decoder_output(None)\n"
        "web_app.__name__, web_app._options, audio.load\n"
    )
    assert _private_uses(source, "x.py") == {
        "x.py: genrify.audio.features._cached_transform",
        "x.py: genrify.audio.decode._decoder_output",
        "x.py: genrify.web.app._options",
    }


def test_no_module_reaches_into_another_modules_private_names():
    files = sorted(SRC.rglob("*.py")) + sorted(TESTS.glob("*.py"))
    uses = set().union(*(_private_uses(f.read_text(), f.relative_to(REPO).as_posix()) for f in files))
    assert uses - KNOWN_PRIVATE_USES == set(), "use a public name (or make one)"
    assert KNOWN_PRIVATE_USES - uses == set(), "fixed: take these off KNOWN_PRIVATE_USES"


def _run_time_nodes(tree: ast.AST):
    """Every node that can run: imports under ``if TYPE_CHECKING:`` are for type checkers only."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _import_graph() -> dict[str, set[str]]:
    """Every genrify module and the genrify modules it imports, at the top or inside a function."""
    root = Path(__file__).resolve().parents[1] / "src"
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for p in (root / "genrify").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _run_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("genrify"):
                    edges.add(target)
        graph[name] = edges
    return graph



def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each cycle of ``graph`` that a depth-first walk meets, as ``a -> b -> a``."""
    cycles: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return cycles


def test_no_import_cycles_inside_the_package():
    """Data flows one way: no module imports (even lazily) one that imports it back."""
    graph = _import_graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of concerns.
    for name in graph:
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") or name.startswith(t + ".") and t == "genrify")}
    cycles = _cycles(graph)
    assert cycles == [], cycles


# --- packages and floors (docs/architecture.md) -----------------------------------------------------

#: The floors, lowest first: a unit (a package, or a module at the top) imports only units on lower
#: floors, never one on its own floor or above. docs/architecture.md draws the same picture.
FLOORS: list[set[str]] = [
    {"genrify.errors", "genrify.defaults"},  # plain constants and the one error family
    {"genrify"},  # the version and the errors' re-export
    {"genrify.core"},  # atomic writes, runners (process pool, Dask), devices
    {"genrify.audio"},  # decode, features, segments, synthetic songs
    {"genrify.collection"},  # the user's files: scan, tags, genre names, organize, write rules
    {"genrify.store"},  # the feature store and extraction into it
    {"genrify.models"},  # networks, weights, the model file and its card
    {"genrify.classify"},  # a model on songs, the library service, albums, cache, outputs
    {"genrify.learn"},  # training, evaluation, learning a library's genres
    {"genrify.web"},  # the web app
    {"genrify.cli"},  # parses and prints
    {"genrify.__main__"},  # python -m genrify
]

#: The modules that import torch (at the top or inside a function). Training and the CNN models
#: need it; the list only shrinks (a torch-free classification path takes modules off it).
TORCH_MODULES = {
    "genrify.audio.features",
    "genrify.audio.transforms",
    "genrify.classify.predict",
    "genrify.cli",
    "genrify.core.devices",
    "genrify.learn.data",
    "genrify.learn.ddp",
    "genrify.learn.embeddings",
    "genrify.learn.evaluation",
    "genrify.learn.training",
    "genrify.models.builtin",
    "genrify.models.modelfile",
    "genrify.models.musicnn",
    # GenreNetwork, moved out of genrify.models so that importing the registry needs no torch.
    "genrify.models.network",
    "genrify.models.normalization",
    "genrify.models.onnx",
    "genrify.models.resnet",
    "genrify.models.seed_cnn",
    "genrify.models.timbre_temporal",
    "genrify.models.transfer",
}

#: At most this many entries at the top of src/genrify (besides __init__.py and __main__.py).
MAX_TOP_LEVEL = 12


def _unit(module: str) -> str:
    """The floor unit a module belongs to: the longest unit that is it or holds it."""
    units = [u for floor in FLOORS for u in floor if module == u or module.startswith(u + ".")]
    units = [u for u in units if u != "genrify" or module == "genrify"]
    return max(units, key=len) if units else module


def _floor(unit: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if unit in floor)


def _unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, targets in _import_graph().items():
        edges = graph.setdefault(_unit(name), set())
        edges.update(_unit(t) for t in targets if _unit(t) != _unit(name))
    return graph


def test_every_module_stands_on_a_floor():
    units = {u for floor in FLOORS for u in floor}
    assert {_unit(name) for name in _import_graph()} - units == set(), "add the new unit to FLOORS"
    top = {p.name for p in SRC.iterdir() if p.name not in ("__init__.py", "__main__.py", "__pycache__")}
    assert {f"genrify.{Path(n).stem}" for n in top if n.endswith(".py") or (SRC / n / "__init__.py").exists()} <= units


def test_no_import_cycles_between_packages():
    cycles = _cycles(_unit_graph())
    assert cycles == [], cycles


def test_lower_floors_never_import_higher_ones():
    """Each import goes down: a unit imports only units on a lower floor (even lazily)."""
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in _import_graph().items()
        for target in targets
        if _unit(target) != _unit(name) and _floor(_unit(target)) >= _floor(_unit(name))
    )
    assert wrong == [], wrong


def test_the_floor_check_sees_an_upward_import():
    assert _floor(_unit("genrify.audio.segments")) < _floor(_unit("genrify.classify.predict"))
    assert _unit("genrify.models.musicnn") == "genrify.models" and _unit("genrify") == "genrify"
    assert _cycles({"a": {"b"}, "b": {"a"}}) == ["a -> b -> a"]


def _imports_torch(path: Path) -> bool:
    for node in _run_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def test_torch_only_where_training_and_the_networks_need_it():
    root = SRC.parent
    found = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
             for p in SRC.rglob("*.py") if _imports_torch(p)}
    assert found - TORCH_MODULES == set(), "a new torch import: keep torch out, or argue for it in TORCH_MODULES"
    assert TORCH_MODULES - found == set(), "torch-free now: take these off TORCH_MODULES"


def test_no_test_imports_another_test():
    """Shared test code lives in conftest.py (fixtures) or helpers.py (functions)."""
    found = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert found == [], found


def test_the_top_level_holds_about_a_dozen_entries():
    top = sorted(p.name for p in SRC.iterdir() if p.name not in ("__init__.py", "__main__.py", "__pycache__"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_no_architecture_name_is_tested_outside_the_registry():
    from genrify.defaults import ARCHITECTURES

    root = Path(__file__).resolve().parents[1] / "src" / "genrify"
    found = []
    for path in root.rglob("*.py"):
        if "models" in path.relative_to(root).parts or path.name in ("defaults.py", "cli.py"):
            continue  # the registry itself, the help list, and the demo naming what it trains
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(c, ast.Constant) and c.value in ARCHITECTURES for c in [node.left, *node.comparators]
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert found == [], found


# --- tagging: one settings object, one service, thin front ends -----------------------------------


def test_cli_classify_stays_thin():
    tree = ast.parse((SRC / "cli.py").read_text())
    (classify,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "classify"]
    # The function with its signature and docstring (decorators aside).
    assert classify.end_lineno - classify.lineno + 1 <= 100


def test_the_beets_plugin_stays_thin():
    # beets' field access, its commands and its import stage; tagging and learning are genrify's.
    assert len((REPO / "src" / "beetsplug" / "genrify.py").read_text().splitlines()) <= 300


def test_the_classification_service_drives_no_tags_folders_or_playlists():
    tree = ast.parse((SRC / "classify" / "service.py").read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    drivers = {"TagReport", "TagWriter", "tag_results", "OrganizeReport", "organize_results", "PlaylistReport",
               "playlist_results", "confident"}
    assert defined & drivers == set()
    assert not [n for n in defined if n.startswith(("_tag", "tag_", "_organize", "_playlist"))]
