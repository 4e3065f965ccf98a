"""The second offline text domain: Jane Austen's novels from a Debian package (apt-get download, sha256 pinned),
read without installing it."""

import io
import tarfile

import pytest

from hf_memmit.data import austen, austen_passages, debian


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, body in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        out += header + body + (b"\n" if len(body) % 2 else b"")
    return out


def _deb(files: dict[str, bytes]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return _ar({"debian-binary": b"2.0\n", "control.tar.xz": b"x", "data.tar.xz": data.getvalue()})


def test_deb_members_reads_the_data_archive(tmp_path):
    deb = tmp_path / "pkg.deb"
    deb.write_bytes(_deb({"./usr/share/a/x.txt": b"odd", "./usr/share/a/y.bin": b"even", "./z.txt": b"zz"}))
    assert debian.deb_members(deb, ("a/x.txt", "y.bin")) == {"./usr/share/a/x.txt": b"odd",
                                                              "./usr/share/a/y.bin": b"even"}
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(RuntimeError, match="no ar magic"):
        debian.deb_members(bad, ("x",))


def test_deb_path_refuses_a_package_with_another_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv(debian.DEB_ENV, str(tmp_path))
    monkeypatch.setenv("HF_MEMMIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "pkg_1.0_all.deb").write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match="expected 00+ "):
        debian.deb_path("pkg", "1.0", "0" * 64)


def test_deb_path_falls_back_to_the_mirror_without_apt_get(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("HF_MEMMIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(debian.DEB_ENV, raising=False)
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    urls = []
    monkeypatch.setattr(debian, "_download", lambda url, path: (urls.append(url), path.write_bytes(b"deb"))[0])
    got = debian.deb_path("pkg", "1.0", hashlib.sha256(b"deb").hexdigest(), "pool/main/p/pkg/")
    assert urls == ["http://deb.debian.org/debian/pool/main/p/pkg/pkg_1.0_all.deb"]
    assert got == tmp_path / "cache" / "debian" / "pkg_1.0_all.deb" and got.read_bytes() == b"deb"
    with pytest.raises(RuntimeError, match="apt-get is missing"):
        debian.deb_path("other", "1.0", "0" * 64)  # no mirror path: nothing to fall back to


def test_passages_group_whole_paragraphs_of_a_chapter():
    lines = ["TITLE", "", "CHAPTER I", "", "one two three", "four", "", "five six", "", "Chapter 2", "",
             "seven eight nine ten", "", "x"]
    chapters = austen.paragraphs_by_chapter(lines)
    assert chapters == [["one two three four", "five six"], ["seven eight nine ten", "x"]]
    assert austen.passages(chapters[0], 2) == ["one two three four", "five six"]
    assert austen.passages(chapters[0], 3) == ["one two three four\n\nfive six"]  # a short tail joins the last
    assert austen.passages(chapters[1], 4) == ["seven eight nine ten\n\nx"]


def test_austen_passages_from_the_pinned_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MEMMIT_CACHE", str(tmp_path))
    passages = austen_passages()
    assert len(passages) == 4739  # six novels, passages of >= 80 words, fixed by the pinned package
    assert passages[0].startswith("Emma Woodhouse, handsome, clever, and rich")
    words = [len(p.split()) for p in passages]
    assert sum(w >= 80 for w in words) >= len(words) - 10  # only whole chapters shorter than 80 words
    assert not any(p.upper().startswith(("CHAPTER", "VOLUME")) for p in passages)
    assert 700_000 < sum(words) < 720_000
    # cached: a second call reads the file, not the package
    monkeypatch.setattr(austen, "austen_novels", lambda: pytest.fail("read the package again"))
    assert austen_passages() == passages
    with pytest.raises(ValueError, match="min_words=0"):
        austen_passages(0)
