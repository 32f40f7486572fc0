"""`robustal data list` and `robustal data download` (the typer app, in process)."""

import shutil

import pytest

from cli_helpers import invoke as invoke_app
from dataset_files import damaged
from robustal.cli.data import data_app
from robustal.data.download import DOWNLOADS, RemoteFile, dataset_status, file_md5
from robustal.errors import DataError


def invoke(*args):
    return invoke_app(*args, app=data_app, terminal_width=250)


def rows(output: str) -> dict[str, str]:
    """dataset name -> state, from the rich table."""
    found = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 3 and cells[1]:
            found[cells[1]] = cells[2]
    return found


def test_list_states(idx_root, svhn_root):
    result = invoke("list", "--data-root", idx_root)
    assert result.exit_code == 0, result.output
    assert rows(result.output) == {
        "cifar10": "missing", "digits": "present", "fashion-mnist": "verified", "mnist": "verified", "svhn": "missing",
    }  # fmt: skip
    root, _ = svhn_root
    assert rows(invoke("list", "--data-root", root).output)["svhn"] == "present"


def test_list_reports_damaged_files_as_corrupt(idx_root, svhn_root, cifar_archive_root):
    root, _ = svhn_root
    shutil.copytree(idx_root / "mnist", root / "mnist")
    labels = root / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(damaged(labels.read_bytes()))
    mat = root / "svhn" / "test_32x32.mat"
    mat.write_bytes(mat.read_bytes()[:-100])
    archive = cifar_archive_root / "cifar10" / "cifar-10-python.tar.gz"
    (root / "cifar10").mkdir()
    (root / "cifar10" / archive.name).write_bytes(archive.read_bytes()[:-100])
    result = invoke("list", "--data-root", root)
    assert result.exit_code == 0, result.output
    assert rows(result.output) == {
        "cifar10": "corrupt", "digits": "present", "fashion-mnist": "missing", "mnist": "corrupt", "svhn": "corrupt",
    }  # fmt: skip
    detail = dataset_status("mnist", root).detail  # what the table shows, wrapped
    assert "train-labels-idx1-ubyte.gz: Error -3 while decompressing data: invalid distance" in detail and "download mnist --force" in detail


def test_download_command_verifies(http_server, cifar_archive_root, tmp_path, monkeypatch):
    archive = cifar_archive_root / "cifar10" / "cifar-10-python.tar.gz"
    with http_server(cifar_archive_root) as url:
        served = RemoteFile(archive.name, (f"{url}/cifar10/{archive.name}",), file_md5(archive))
        monkeypatch.setitem(DOWNLOADS, "cifar10", (served,))
        result = invoke("download", "cifar10", "--data-root", tmp_path)
    assert result.exit_code == 0, result.output
    assert "verified cifar10" in result.output
    assert (tmp_path / "cifar10" / archive.name).read_bytes() == archive.read_bytes()


def test_download_command_fails_on_a_wrong_checksum(http_server, cifar_archive_root, tmp_path, monkeypatch):
    with http_server(cifar_archive_root) as url:
        # the official md5 of the real archive; the small test archive cannot match it
        monkeypatch.setitem(DOWNLOADS, "cifar10", (RemoteFile("cifar-10-python.tar.gz", (), DOWNLOADS["cifar10"][0].md5),))
        result = invoke("download", "cifar10", "--data-root", tmp_path, "--mirror", url)
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    assert f"{url}/cifar10/cifar-10-python.tar.gz" in str(result.exception)
    assert "expected c58f30108f718f92721af3b95e74349a" in str(result.exception)
    assert list((tmp_path / "cifar10").iterdir()) == []


@pytest.mark.parametrize("args", [["--help"], []])
def test_help(args):
    result = invoke(*args)
    assert "download" in result.output and "list" in result.output
