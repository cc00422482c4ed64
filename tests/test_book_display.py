"""scratchnn.book.display: stored results are found in the checkout, or fetched from the
commit pip installed (as in Colab) without touching the network here."""
import io
import json

from scratchnn.book import display


def test_a_stored_file_is_found_in_the_checkout_from_a_subfolder(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.json").write_text('{"value": 3}')
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    assert display.stored_file("results/a.json") == tmp_path / "results" / "a.json"
    assert display.stored_json("results/a.json") == {"value": 3}


def test_outside_the_checkout_it_is_fetched_from_the_installed_commit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(display.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    origin = {"url": "https://github.com/someone/book", "vcs_info": {"commit_id": "abc123"}}

    class Distribution:
        def read_text(self, name):
            assert name == "direct_url.json"
            return json.dumps(origin)

    asked = []

    def urlopen(url):
        asked.append(url)
        return io.BytesIO(b"\x00binary\xff")

    monkeypatch.setattr(display.importlib.metadata, "distribution", lambda name: Distribution())
    monkeypatch.setattr(display.urllib.request, "urlopen", urlopen)
    path = display.stored_file("results/standard/crops.npz")
    assert path.read_bytes() == b"\x00binary\xff"
    assert asked == ["https://github.com/someone/book/raw/abc123/results/standard/crops.npz"]
    assert display.stored_file("results/standard/crops.npz") == path and len(asked) == 1


def test_outside_a_checkout_without_a_git_install_it_says_what_to_do(tmp_path, monkeypatch):
    import pytest

    class Distribution:   # installed from a wheel or a folder: no vcs_info
        def read_text(self, name):
            return json.dumps({"url": "file:///somewhere", "dir_info": {}})

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(display.importlib.metadata, "distribution", lambda name: Distribution())
    with pytest.raises(FileNotFoundError, match="inside a clone"):
        display.stored_file("results/nothing.json")
