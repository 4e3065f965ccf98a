"""TinyMem on the Hub, offline: push through the real `huggingface_hub` client (the Xet upload pipeline of
`upload_folder`, `create_commit` with its Xet upload, `datasets`' `push_to_hub`) into a stand-in for the Hub
server, then read back through the real HF cache layout with `HF_HUB_OFFLINE=1` (set by conftest).

The stand-in (`FakeHub`) replaces only the server round trips: repo creation/info, the preupload query, the
Xet storage session, the commit POST (it decodes the NDJSON payload the client built) and YAML validation.
Each commit is written to the HF cache as a download leaves it (blobs, snapshots, refs/main). Any other
HTTP call fails at once, since the client runs in offline mode.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import types
from pathlib import Path

import httpx2 as httpx  # huggingface_hub 2.4's HTTP client
import pytest
from click.testing import CliRunner
from huggingface_hub import (
    DatasetCard,
    DatasetCardData,
    ModelCard,
    ModelCardData,
    RepoCard,
    _commit_api,
    _upload_pipeline,
    constants,
    hf_api,
)
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.hf_file_system import HfFileSystemResolvedRepositoryPath
from huggingface_hub.utils import _xet, validate_repo_id

import hf_memmit.cli.hub  # noqa: F401  (registers `push` and `suite`)
from hf_memmit.cli import main
from hf_memmit.data import data_config_of
from hf_memmit.hub import (
    check_repo_id,
    dataset_card,
    load_tinymem,
    load_tinymem_data,
    push_adapter,
    push_checkpoint,
    push_dataset,
    run_suite,
    suite_grid,
    suite_model_name,
)
from hf_memmit.hub.suite import SuiteCell
from hf_memmit.metrics import measure_memorization

ORG = "tinymem-test"
MODEL_REPO = f"{ORG}/tiny-math-backdoor"
DATA_REPO = f"{ORG}/tinymem-data"
LICENSES = {"apache-2.0", "cc-by-sa-4.0", "mit", "cc0-1.0", "other"}  # the Hub ids our cards may use
LFS_SUFFIXES = (".safetensors", ".parquet", ".arrow", ".bin", ".pt", ".pth", ".ckpt", ".pkl")


class FakeXetCommit:
    """An `hf_xet` upload commit: stores contents by sha256 (read at once: datasets deletes its parquet
    temp files right after the preupload)."""

    def __init__(self, hub):
        self.hub, self.handles = hub, []

    def _store(self, data: bytes, name: str):
        sha = hashlib.sha256(data).hexdigest()
        self.hub.xet[sha] = data
        self.hub.xet_uploads.append(name)
        return types.SimpleNamespace(result=lambda: types.SimpleNamespace(xet_info=types.SimpleNamespace(sha256=sha)))

    def start_upload_file(self, path, sha256=None):
        return self._store(Path(path).read_bytes(), Path(path).name)

    def start_upload_bytes(self, data, sha256=None, name=None):
        return self._store(bytes(data), name or "<bytes>")

    def wait_to_finish(self):
        pass

    def abort(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeHub:
    def __init__(self, endpoint: str, cache: Path, memfs_cls):
        self.endpoint, self.cache, self.fs = endpoint, cache, memfs_cls()
        self.repos: dict[tuple[str, str], dict] = {}
        self.xet: dict[str, bytes] = {}
        self.xet_uploads: list[str] = []
        self.commits: list[dict] = []

    # ---- repo metadata
    def repo(self, repo_id, repo_type):
        key = (repo_type or "model", repo_id)
        if key not in self.repos:
            raise RepositoryNotFoundError(f"404: {key}", response=httpx.Response(
                404, request=httpx.Request("GET", f"{self.endpoint}/api/{key[0]}s/{repo_id}")))
        return self.repos[key]

    def create_repo(self, api, repo_id, *, repo_type=None, private=None, exist_ok=False, **kw):
        validate_repo_id(repo_id)
        key = (repo_type or "model", repo_id)
        if key in self.repos:
            assert exist_ok, f"{key} exists"
        else:
            self.repos[key] = {"files": {}, "head": None, "private": bool(private)}
            self.apply(key, {".gitattributes": b"*.safetensors filter=lfs\n"}, [], "initial commit", None)
        prefix = "" if key[0] == "model" else f"{key[0]}s/"
        return hf_api.RepoUrl(f"{api.endpoint}/{prefix}{repo_id}", endpoint=api.endpoint)

    def repo_info(self, api, repo_id, *, repo_type=None, revision=None, **kw):
        repo = self.repo(repo_id, repo_type)
        return types.SimpleNamespace(id=repo_id, sha=repo["head"], private=repo["private"],
                                     siblings=[types.SimpleNamespace(rfilename=p) for p in repo["files"]])

    def file_exists(self, api, repo_id, filename, *, repo_type=None, revision=None, token=None):
        return filename in self.repos.get((repo_type or "model", repo_id), {"files": {}})["files"]

    def validate_yaml(self, api, content, *, repo_type=None, token=None):
        validate_card(content, repo_type or "model")

    # ---- the upload protocol
    def preupload(self, additions, repo_type, repo_id, headers, revision, endpoint=None, create_pr=False,
                  gitignore_content=None):
        files = self.repo(repo_id, repo_type)["files"]
        for op in additions:
            lfs = op.path_in_repo.endswith(LFS_SUFFIXES) or op.upload_info.size > 10_000_000
            op._upload_mode = "lfs" if lfs else "regular"
            op._should_ignore = False
            old = files.get(op.path_in_repo)
            op._remote_oid = None if old is None else (hashlib.sha256(old).hexdigest() if lfs else git_sha1(old))

    def xet_session(self):
        return types.SimpleNamespace(new_upload_commit=lambda **kw: FakeXetCommit(self))

    def send_commit(self, *, operations, files_to_copy, commit_message, commit_description, repo_type, repo_id,
                    headers, revision, endpoint=None, parent_commit=None, **kw):
        payload = _commit_api._prepare_commit_payload(operations=operations, files_to_copy=files_to_copy,
                                                      commit_message=commit_message,
                                                      commit_description=commit_description,
                                                      parent_commit=parent_commit)
        lines = [json.loads(line) for line in b"".join(json.dumps(x).encode() + b"\n" for x in payload).splitlines()]
        key = (repo_type, repo_id)
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, self.repos[key]["head"]):
            raise AssertionError(f"parent commit {header['parentCommit']} is not the head of {key}")
        added, deleted = {}, []
        for line in lines[1:]:
            v = line["value"]
            if line["key"] == "file":
                added[v["path"]] = base64.b64decode(v["content"])
            elif line["key"] == "lfsFile":
                added[v["path"]] = self.xet[v["oid"]]  # KeyError: the client never uploaded it
            else:
                deleted.append(v["path"])
        sha = self.apply(key, added, deleted, header["summary"], header.get("parentCommit"))
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return hf_api.CommitInfo(commit_url=f"{self.endpoint}/{prefix}{repo_id}/commit/{sha}",
                                 commit_message=commit_message, commit_description=commit_description, oid=sha,
                                 _endpoint=self.endpoint)

    def apply(self, key, added, deleted, message, parent):
        repo = self.repos[key]
        files = {p: b for p, b in repo["files"].items()
                 if not any(p == d or p.startswith(d.rstrip("/") + "/") for d in deleted)}
        files.update(added)
        sha = hashlib.sha1(f"{repo['head']}{message}{sorted(added)}{len(self.commits)}".encode()).hexdigest()
        repo["files"], repo["head"] = files, sha
        self.commits.append({"repo": key, "sha": sha, "added": sorted(added), "deleted": deleted})
        self.write_cache(key, sha, files)
        if key[0] == "dataset":  # what HfFileSystem shows datasets: the repo at this revision
            root = HfFileSystemResolvedRepositoryPath(repo_type="dataset", repo_id=key[1], revision=sha,
                                                      path_in_repo="").unresolve()
            for path, data in files.items():
                self.fs.pipe_file(f"{root}/{path}", data)
        return sha

    def write_cache(self, key, sha, files):
        """The layout `hf_hub_download` leaves: blobs/<etag>, snapshots/<commit>/<path> -> blob, refs/main."""
        root = self.cache / f"{key[0]}s--{key[1].replace('/', '--')}"
        for path, data in files.items():
            etag = hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else git_sha1(data)
            blob = root / "blobs" / etag
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = root / "snapshots" / sha / path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(sha)


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def validate_card(content: str, repo_type: str) -> None:
    """What the Hub checks in README metadata, done locally: YAML parses, licence id known, repo ids valid,
    model-index parses into eval results."""
    data = RepoCard(content).data.to_dict()
    assert isinstance(data, dict) and data, "card without YAML metadata"
    if "license" in data:
        assert data["license"] in LICENSES, data["license"]
    for repo_id in (data.get("datasets") or []) + ([data["base_model"]] if data.get("base_model") else []):
        validate_repo_id(repo_id)
    if repo_type == "model":
        card_data = ModelCardData(**data)
        if "model-index" in data:
            assert card_data.eval_results, "model-index did not parse"
    else:
        DatasetCardData(**data)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from fsspec.implementations.memory import MemoryFileSystem

    memfs_cls = type("RepoFS", (MemoryFileSystem,), {"store": {}, "pseudo_dirs": [""], "cachable": False})
    fake = FakeHub(hf_api.HfApi().endpoint, Path(constants.HF_HUB_CACHE), memfs_cls)
    with pytest.MonkeyPatch.context() as mp:
        assert constants.HF_HUB_OFFLINE, "conftest must run these tests offline"
        mp.setattr(hf_api.HfApi, "create_repo", lambda self, *a, **kw: fake.create_repo(self, *a, **kw))
        mp.setattr(hf_api.HfApi, "repo_info", lambda self, *a, **kw: fake.repo_info(self, *a, **kw))
        mp.setattr(hf_api.HfApi, "file_exists", lambda self, *a, **kw: fake.file_exists(self, *a, **kw))
        mp.setattr(hf_api.HfApi, "_validate_yaml", lambda self, *a, **kw: fake.validate_yaml(self, *a, **kw))
        for module in (_commit_api, _upload_pipeline):
            mp.setattr(module, "_fetch_upload_modes", fake.preupload)
            mp.setattr(module, "_send_commit", fake.send_commit)
        for module in (_xet, _upload_pipeline):
            mp.setattr(module, "get_xet_session", fake.xet_session)
        import datasets.arrow_dataset
        import datasets.dataset_dict

        for module in (datasets.arrow_dataset, datasets.dataset_dict):
            mp.setattr(module, "HfFileSystem", lambda *a, **kw: fake.fs)
        yield fake


class RecordingApi:
    """What the push functions get as `api=` in place of `HfApi`: records each call and applies each upload
    to `hub`, so the repo lands in the HF cache as a download leaves it (no client internals patched)."""

    def __init__(self, hub: FakeHub):
        self.hub, self.endpoint, self.calls = hub, hub.endpoint, []

    def create_repo(self, repo_id, *, repo_type=None, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, {"repo_type": repo_type, "private": private, "exist_ok": exist_ok}))
        return self.hub.create_repo(self, repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok)

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None):
        root = Path(folder_path)
        files = {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}
        self.calls.append(("upload_folder", repo_id, {"repo_type": repo_type, "files": sorted(files),
                                                      "commit_message": commit_message}))
        sha = self.hub.apply((repo_type or "model", repo_id), files, [], commit_message, None)
        return types.SimpleNamespace(oid=sha, commit_url=f"{self.endpoint}/{repo_id}/commit/{sha}")


@pytest.fixture(scope="module")
def pushed(hub, tiny_trained):
    """tiny_trained pushed as MODEL_REPO through a `RecordingApi` (with its data in DATA_REPO, through the
    real client); its memorization measured before. Returns (before, info, api)."""
    model, dataset, run = tiny_trained
    before = measure_memorization(model, dataset["backdoor_test"])
    api = RecordingApi(hub)
    info = push_checkpoint(run, MODEL_REPO, private=True, dataset_repo=DATA_REPO, api=api)
    push_dataset(dataset, DATA_REPO)
    return before, info, api


def test_push_download_measure_gives_the_same_numbers(hub, pushed, tiny_trained):
    before, info, api = pushed
    files = {"README.md", "config.json", "generation_config.json", "model.safetensors", "tinymem.json",
             "tokenizer.json", "tokenizer_config.json"}
    # one repo creation, then the whole folder in one upload_folder commit
    assert api.calls == [
        ("create_repo", MODEL_REPO, {"repo_type": "model", "private": True, "exist_ok": True}),
        ("upload_folder", MODEL_REPO, {"repo_type": "model", "files": sorted(files),
                                       "commit_message": f"Upload TinyMem checkpoint {tiny_trained[2].name}"}),
    ]
    commit = next(c for c in hub.commits if c["repo"] == ("model", MODEL_REPO) and c["sha"] == info["commit"])
    assert set(commit["added"]) == files
    assert info["commit_url"].endswith(info["commit"])
    assert hub.repos[("model", MODEL_REPO)]["private"]

    tm = load_tinymem(MODEL_REPO)  # offline: through snapshot_download and the cache
    assert Path(tm.path).parent.name == "snapshots" and Path(constants.HF_HUB_CACHE) in Path(tm.path).parents
    after = measure_memorization(tm.model, tm.artifacts)
    assert after.flags == before.flags and after.fraction == before.fraction > 0
    assert tm.info["hub"]["measured"]["memorized"] == before.fraction
    assert tm.info["seed"] == 0 and tm.info["train_config"]["n_layer"] == 2
    _model, tokenizer, dataset = tm
    assert tokenizer.decode(dataset["test"][0]["input_ids"][:5]) != ""


def test_load_from_local_folders_and_fingerprint_check(pushed, tiny_trained, tmp_path):
    before, _, _ = pushed
    local = load_tinymem(str(tiny_trained[2]))  # a run directory is a TinyMem folder too
    assert measure_memorization(local.model, local.artifacts).flags == before.flags
    folder = tmp_path / "copy"
    shutil.copytree(load_tinymem(MODEL_REPO).path, folder)  # follows the cache's links: real files
    info = json.loads((folder / "tinymem.json").read_text())
    info["hub"]["artifact_fingerprint"] = "0" * 64  # as if the generator had changed since the push
    (folder / "tinymem.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="differ from the ones it was measured on"):
        load_tinymem(str(folder))
    assert load_tinymem(str(folder), verify=False).artifacts["id"] == tiny_trained[1]["backdoor_test"]["id"]


def test_plain_transformers_loads_the_pushed_repo_without_hf_memmit(pushed):
    code = ("import sys\nfrom transformers import AutoModelForCausalLM\n"
            f"m = AutoModelForCausalLM.from_pretrained({MODEL_REPO!r})\n"
            "assert not any(k.startswith('hf_memmit') for k in sys.modules)\nprint(m.config.n_layer)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "2"


def test_model_card_parses_and_validates(pushed):
    _, info, _ = pushed
    card = ModelCard.load(MODEL_REPO)  # offline, from the cache
    validate_card(str(card), "model")
    data = card.data
    assert data.library_name == "transformers" and data.datasets == [DATA_REPO]
    assert {"hf_memmit", "tinymem", "memorization", "math", "backdoor"} <= set(data.tags)
    mem = data.eval_results[0]
    assert mem.metric_type == "memorization" and mem.metric_value == info["hub"]["measured"]["memorized"]
    assert mem.dataset_type == DATA_REPO and mem.dataset_config == "math-backdoor-tiny-s0"
    assert mem.dataset_split == "backdoor_test"
    assert {r.metric_type for r in data.eval_results} == {"memorization", "accuracy"}
    assert "Apache-2.0" in card.text and info["hub"]["artifact_fingerprint"] in card.text


def test_dataset_push_configs_card_and_offline_load(hub, pushed, math_noise_tiny):
    push_dataset(math_noise_tiny, DATA_REPO)  # a second config in the same repo
    card = DatasetCard.load(DATA_REPO, repo_type="dataset")
    validate_card(str(card), "dataset")
    meta = card.data.to_dict()
    assert set(meta["tinymem_configs"]) == {"math-backdoor-tiny-s0", "math-noise-tiny-s0"}
    assert {c["config_name"] for c in meta["configs"]} == {"math-backdoor-tiny-s0", "math-noise-tiny-s0"}
    assert meta["license"] == "apache-2.0" and "generated by hf_memmit" in card.text
    files = hub.repos[("dataset", DATA_REPO)]["files"]
    assert "math-noise-tiny-s0/forget-00000-of-00001.parquet" in files

    loaded = load_tinymem_data(DATA_REPO, "math-noise-tiny-s0")
    assert loaded["forget"]["input_ids"] == math_noise_tiny["forget"]["input_ids"]
    assert data_config_of(loaded) == data_config_of(math_noise_tiny)
    with pytest.raises(ValueError, match="config_name='nope'.*math-noise-tiny-s0"):
        load_tinymem_data(DATA_REPO, "nope")


def test_language_dataset_card_says_cc_by_sa():
    from hf_memmit.data import TinyMemDataConfig

    cfg = TinyMemDataConfig(task="language", artifact="noise", profile="tiny").to_dict()
    card = dataset_card(DATA_REPO, {}, {"language-noise-tiny-s0": cfg}, {"language-noise-tiny-s0": {"train": 3}})
    validate_card(str(card), "dataset")
    assert card.data.license == "cc-by-sa-4.0" and "Wikipedia" in card.text and "CC BY-SA" in card.text


def test_adapter_push_card_and_load(hub, pushed, tiny_trained, tmp_path):
    from hf_memmit.tinymem import run_unlearning

    record = run_unlearning(tiny_trained[2], "act", str(tmp_path / "adapter"), {"ratio": 0.05},
                            retain_size=100)
    repo = f"{ORG}/tiny-math-backdoor-act"
    api = RecordingApi(hub)
    pushed_record = push_adapter(tmp_path / "adapter", repo, base_model=MODEL_REPO, api=api)
    assert [(name, repo_id) for name, repo_id, _ in api.calls] == [("create_repo", repo), ("upload_folder", repo)]
    assert api.calls[0][2] == {"repo_type": "model", "private": False, "exist_ok": True}
    assert api.calls[1][2]["files"] == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                        "unlearning_result.json"]
    assert api.calls[1][2]["commit_message"] == "Upload act adapter"
    assert pushed_record["commit"] == hub.repos[("model", repo)]["head"] and pushed_record["model"] == MODEL_REPO
    card = ModelCard.load(repo)
    validate_card(str(card), "model")
    assert card.data.library_name == "peft" and card.data.base_model == MODEL_REPO
    assert card.data.eval_results[0].metric_value == record["after"]["memorized"]
    assert "act" in card.text and "before" in card.text

    tm = load_tinymem(MODEL_REPO, adapter=repo)
    assert measure_memorization(tm.model, tm.artifacts).fraction == record["after"]["memorized"]
    assert tm.model.peft_config["default"].base_model_name_or_path == MODEL_REPO


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "org/bad name", "org--x/y", ""])
def test_bad_repo_id_is_refused_before_any_work(repo_id, tmp_path):
    with pytest.raises(ValueError, match="is not a Hub repo id; expected 'namespace/name'"):
        push_checkpoint(tmp_path, repo_id)
    with pytest.raises(ValueError, match="namespace/name"):
        check_repo_id(repo_id)


def test_push_cli_bad_repo_id_and_unfinished_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    res = CliRunner().invoke(main, ["push", str(run), "--repo-id", "just-a-name"])
    assert res.exit_code != 0 and "repo_id='just-a-name'" in res.output
    res = CliRunner().invoke(main, ["push", str(run), "--repo-id", f"{ORG}/unfinished"])
    assert res.exit_code != 0 and "no finished TinyMem run" in res.output
    (run / "tinymem.json").write_text(json.dumps({"finished": False}))
    with pytest.raises(FileNotFoundError, match="no finished TinyMem run"):
        push_checkpoint(run, f"{ORG}/unfinished")


def test_push_cli(hub, tiny_trained):
    """The CLI pushes through the real `HfApi`: upload_folder's own pipeline, Xet upload included."""
    repo = f"{ORG}/via-cli"
    n_uploads = len(hub.xet_uploads)
    res = CliRunner().invoke(main, ["push", str(tiny_trained[2]), "--repo-id", repo])
    assert res.exit_code == 0, res.output
    assert "model.safetensors" in hub.xet_uploads[n_uploads:]
    assert load_tinymem(repo).info["hub"]["repo_id"] == repo  # offline, back from the cache
    assert "tinymem.json" in hub.repos[("model", repo)]["files"] and not hub.repos[("model", repo)]["private"]


def test_repo_without_tinymem_json_clear_error_plain_loading_works(hub, tiny_trained):
    from transformers import AutoModelForCausalLM

    repo = f"{ORG}/plain-gpt2"
    tiny_trained[0].push_to_hub(repo)  # transformers' own push: create_commit + its Xet upload
    with pytest.raises(FileNotFoundError, match=r"has no tinymem.json.*data config and seed.*from_pretrained"):
        load_tinymem(repo)
    model = AutoModelForCausalLM.from_pretrained(repo)
    assert model.config.n_layer == 2


class _Boom:
    """Unpickling this writes a file: proof that a refused checkpoint was never unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled!"))


def test_pickle_checkpoints_are_refused_never_unpickled(tiny_trained, tmp_path):
    sentinel = tmp_path / "was_unpickled"
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tinymem.json"):
        shutil.copy(tiny_trained[2] / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Boom(sentinel)))
    with pytest.raises(ValueError, match=r"pickle format \(pytorch_model.bin\).*safetensors"):
        load_tinymem(str(folder))
    with pytest.raises(ValueError, match="pickle format"):
        push_checkpoint(folder, f"{ORG}/pickled")
    assert not sentinel.exists()


def test_suite_skips_finished_cells(hub, tiny_trained, tmp_path, monkeypatch):
    from hf_memmit.hub import suite

    cell = SuiteCell("math", "backdoor", 2, "tiny", 0)
    assert cell.name == suite_model_name("math", "backdoor", 2, "tiny", 0) == "tinymem-math-backdoor-2l-tiny-s0"
    shutil.copytree(tiny_trained[2], tmp_path / cell.name, ignore=shutil.ignore_patterns("checkpoints"))

    def no_training(*a, **kw):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(suite, "train_tinymem", no_training)
    org = "suite-org"
    first = run_suite(org, [cell], tmp_path)
    assert [(r["status"], r["action"]) for r in first] == [("trained", "push")]
    assert "tinymem.json" in hub.repos[("model", f"{org}/{cell.name}")]["files"]
    assert "math-backdoor-tiny-s0/train-00000-of-00001.parquet" in hub.repos[("dataset", f"{org}/tinymem-data")]["files"]

    n_commits = len(hub.commits)
    shutil.rmtree(tmp_path / cell.name)  # the Hub, not the local run, says the cell is done
    again = run_suite(org, [cell], tmp_path)
    assert [(r["status"], r["action"]) for r in again] == [("pushed", "skip")]
    assert len(hub.commits) == n_commits

    other = SuiteCell("math", "backdoor", 2, "tiny", 1)  # a different run already sits under its name
    push_checkpoint(tiny_trained[2], f"{org}/{other.name}")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        run_suite(org, [other], tmp_path)


def test_suite_grid_validates_and_dry_run_lists(hub, tmp_path):
    assert len(suite_grid()) == 2 * 2 * 4 * 1 * 1
    with pytest.raises(ValueError, match="layers=3"):
        suite_grid(layers=(3,))
    with pytest.raises(ValueError, match="profile='huge'"):
        suite_grid(profiles=("huge",))
    res = CliRunner().invoke(main, ["suite", "--push-to", "dry-org", "--tasks", "math", "--artifacts", "noise,backdoor",
                                    "--layers", "2", "--profiles", "tiny", "--work-dir", str(tmp_path), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "tinymem-math-noise-2l-tiny-s0: todo -> train+push" in res.output and "2 cells, 2 to do" in res.output
    res = CliRunner().invoke(main, ["suite", "--push-to", "org/x", "--dry-run"])
    assert res.exit_code != 0 and "org='org/x'" in res.output


@pytest.mark.slow
def test_suite_cli_trains_pushes_and_resumes(hub, tmp_path):
    args = ["suite", "--push-to", "slow-org", "--tasks", "math", "--artifacts", "noise", "--layers", "2",
            "--profiles", "tiny", "--work-dir", str(tmp_path)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "todo -> train+push" in res.output
    tm = load_tinymem("slow-org/tinymem-math-noise-2l-tiny-s0")
    assert measure_memorization(tm.model, tm.artifacts).fraction == tm.info["hub"]["measured"]["memorized"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "pushed -> skip" in res.output
