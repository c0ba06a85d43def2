"""Mesh files keep their last good version: a save cut off mid-way or a bad edit never takes objects away.

Each row is a scenario: the files' contents over successive loads of one `MeshDirectory`, and what is served
(services by name) and reported (the file named, with its line) after the last load."""

from __future__ import annotations

from pathlib import Path

import pytest

from xds.mesh.files import FileProblem, MeshDirectory, read_file

A = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: default}\nspec: {ports: [{port: 80}]}\n"
B = "apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: default}\nspec: {ports: [{port: 81}]}\n"
A_AND_B = A + "---\n" + B
TRUNCATED = A_AND_B[: A_AND_B.index("{name: b") + 6]  # the save stopped inside b's metadata
BAD_INDENT = A + "---\napiVersion: v1\nkind: Service\n metadata: {name: c}\n"
NOT_AN_OBJECT = A + "---\n- just\n- a list\n"
NO_KIND = A + "---\napiVersion: v1\nmetadata: {name: c}\n"
GONE = None  # the file is deleted

# (scenario, the file's successive contents, services served after the last load, error expected in the report)
ROWS = [
    ("good_file_is_served", [A_AND_B], {"a", "b"}, None),
    ("truncated_save_keeps_the_last_good_version", [A_AND_B, TRUNCATED], {"a", "b"}, "line 8: cannot parse"),
    ("bad_indentation_keeps_the_last_good_version", [A_AND_B, BAD_INDENT], {"a", "b"}, "line 8: cannot parse"),
    ("not_an_object_keeps_the_last_good_version", [A_AND_B, NOT_AN_OBJECT], {"a", "b"}, "document 1: is not an"),
    ("no_kind_keeps_the_last_good_version", [A_AND_B, NO_KIND], {"a", "b"}, "document 1.kind: has no kind"),
    ("new_bad_file_adds_nothing", [TRUNCATED], set(), "nothing from it is served"),
    ("fixed_file_serves_its_new_version", [A_AND_B, TRUNCATED, A], {"a"}, None),
    ("deleted_file_deletes_its_objects", [A_AND_B, GONE], set(), None),
    ("deleted_after_a_bad_save_deletes_the_last_good_objects_too", [A_AND_B, TRUNCATED, GONE], set(), None),
    ("two_bad_saves_in_a_row_keep_the_version_before_both", [A_AND_B, TRUNCATED, BAD_INDENT], {"a", "b"}, "line 8"),
]


@pytest.mark.parametrize(("contents", "served", "reported"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_mesh_file_last_good_version(
    tmp_path: Path, contents: list[str | None], served: set[str], reported: str | None
) -> None:
    path = tmp_path / "services.yaml"
    directory = MeshDirectory(tmp_path)
    for text in contents:
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
        mesh = directory.load()
    assert {s.name for s in mesh.services} == served
    file_errors = [e for e in mesh.errors if e.ref.kind == "File"]
    if reported is None:
        assert not file_errors
    else:
        (error,) = file_errors
        assert error.source == str(path) and reported in str(error), str(error)


def test_a_bad_json_file_keeps_its_last_good_version_and_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "svc.json"
    path.write_text('{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j", "namespace": "default"}}')
    directory = MeshDirectory(tmp_path)
    assert [s.name for s in directory.load().services] == ["j"]
    path.write_text('{"apiVersion": "v1",\n "kind": "Service",\n "metadata": {"name": ')
    mesh = directory.load()
    assert [s.name for s in mesh.services] == ["j"]
    (error,) = mesh.errors
    assert "svc.json" in str(error) and "line 3" in str(error) and "last good version (1 objects)" in str(error)


def test_a_file_that_is_not_utf8_is_a_file_problem(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"kind: Service\nmetadata: {name: \xff\xfe}\n")
    with pytest.raises(FileProblem, match="not UTF-8"):
        read_file(path)


def test_other_files_are_unaffected_by_one_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(A)
    (tmp_path / "b.yaml").write_text(B)
    directory = MeshDirectory(tmp_path)
    directory.load()
    (tmp_path / "b.yaml").write_text(B[:30])
    (tmp_path / "a.yaml").write_text(A.replace("port: 80", "port: 8080"))
    mesh = directory.load()
    assert {(s.name, s.ports[0].port) for s in mesh.services} == {("a", 8080), ("b", 81)}
