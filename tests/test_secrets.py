"""No secret reaches a file or stderr: URL credentials, storage options, command lines, validation errors."""

from __future__ import annotations

import json
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corpus.cli import main
from corpus.extract.stage import Extract
from corpus.ingest.stage import Ingest
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe
from corpus.run.secrets import REDACTED, describe_error, redact, redact_argv, redact_text
from schemas import DECISION, read_polars

SECRETS = ("hunter2pass", "AKIDEXAMPLEKEY77", "wJalrXUtnFEMIbPxRfiCYEXAMPLE", "gcs-token-value-9", "pw-horse-battery")


def test_credentials_in_urls_are_redacted_wherever_they_appear():
    text = "fetching https://alice:hunter2pass@example.org/a.pdf and s3://AKIDEXAMPLEKEY77:wJalrXUtnFEMIbPxRfiCYEXAMPLE@bucket/x"
    clean = redact_text(text)
    assert "hunter2pass" not in clean and "AKIDEXAMPLEKEY77" not in clean and "wJalrXUtnFEMIbPxRfiCYEXAMPLE" not in clean
    assert f"https://{REDACTED}@example.org/a.pdf" in clean and f"s3://{REDACTED}@bucket/x" in clean
    assert redact_text("see http://example.org/a@b and user@example.org") == "see http://example.org/a@b and user@example.org"


def test_every_storage_option_value_is_redacted_and_its_keys_kept():
    options = {"key": "AKIDEXAMPLEKEY77", "secret": "wJalrXUtnFEMIbPxRfiCYEXAMPLE", "token": "gcs-token-value-9",
               "client_kwargs": {"endpoint_url": "https://minio.local"}, "anon": False}
    clean = redact({"storage_options": options, "categories": ["astro-ph*"]})
    assert clean == {"storage_options": dict.fromkeys(options, REDACTED), "categories": ["astro-ph*"]}


def test_storage_options_change_how_files_are_reached_not_the_step():
    for stage in (Ingest({"storage_options": {"key": "AKIDEXAMPLEKEY77"}}), Extract({"storage_options": {"key": "x"}})):
        assert "storage_options" in stage.config_dict() and "storage_options" not in stage.what_config()


def test_redact_argv_hides_secret_option_values_storage_options_and_json():
    argv = ["ingest", "--storage-options", '{"password": "pw-horse-battery", "anon": false}', "--hf-token=hunter2pass",
            "--api-key", "AKIDEXAMPLEKEY77", "--nougat", '{"device": "cpu", "auth_token": "gcs-token-value-9"}',
            "--pdfs", "https://alice:wJalrXUtnFEMIbPxRfiCYEXAMPLE@example.org/pdf", "--workers", "2"]
    clean = redact_argv(argv)
    assert not any(s in " ".join(clean) for s in SECRETS)
    assert clean[:2] == ["ingest", "--storage-options"] and json.loads(clean[2]) == {"anon": REDACTED, "password": REDACTED}
    assert clean[3] == f"--hf-token={REDACTED}" and clean[4:6] == ["--api-key", REDACTED]
    assert json.loads(clean[7]) == {"auth_token": REDACTED, "device": "cpu"} and clean[-2:] == ["--workers", "2"]
    assert redact_argv(["--storage-options", "not json"]) == ["--storage-options", REDACTED]


def test_describe_error_never_echoes_the_input_value():
    try:
        Ingest({"storage_options": "pw-horse-battery", "since": "hunter2pass"})
    except Exception as e:  # noqa: BLE001 - the ValidationError is the subject
        message = describe_error(e)
        assert "pw-horse-battery" not in message and "hunter2pass" not in message
        assert message.splitlines()[1:] == ["  since: Input should be a valid date or datetime, invalid character in year",
                                            "  storage_options: Input should be a valid dictionary"]
    assert describe_error(OSError("cannot open https://alice:hunter2pass@host/x")) == f"cannot open https://{REDACTED}@host/x"


@pytest.fixture
def web_folder(fixtures, tmp_path):
    """A loopback HTTP server over a folder holding one PDF: ``(folder, port)``."""
    folder = tmp_path / "web"
    folder.mkdir()
    shutil.copy(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf", folder / "b.pdf")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, server.server_address[1]
    server.shutdown()
    thread.join()


def test_a_run_whose_config_and_urls_carry_secrets_writes_none_of_them(fixtures, tmp_path, capfd, web_folder):
    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    shutil.copy(fixtures / "pdf" / "aastex63_sample_article.pdf", pdfs / "a.pdf")
    options = {"key": "AKIDEXAMPLEKEY77", "secret": "wJalrXUtnFEMIbPxRfiCYEXAMPLE", "password": "pw-horse-battery"}
    url = f"http://alice:hunter2pass@127.0.0.1:{web_folder[1]}/"
    steps = [Step(stage="ingest", config={"pdfs": [str(pdfs), url], "storage_options": options}),
             Step(stage="extract", config={"storage_options": {"token": "gcs-token-value-9"}})]
    out = tmp_path / "out"
    argv = ["ingest", "--pdfs", str(pdfs), url, "--storage-options", json.dumps(options), f"--api-key={options['secret']}"]
    run_recipe(Recipe(steps=steps, executor=ExecutorConfig(tasks=2, workers=2, quiet=True)), out, argv=argv)
    assert (out / "_work" / "00-ingest" / "logs" / "executor.json").exists()  # datatrove's, from Stage.__repr__
    # not checked: the step's private plan (_work/00-ingest/plan.pkl) keeps the locations as given, credentials
    # included, because the shards open the files with them (see the report: credentials belong in storage_options)
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "plan.pkl"]
    for secret in SECRETS:
        assert not [p for p in files if secret.encode() in p.read_bytes()], secret
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(json.dumps({"steps": [{"stage": "ingest", "config": {"storage_options": "pw-horse-battery"}}]}))
    assert main(["--quiet", "run", str(recipe), "--out", str(tmp_path / "bad")]) == 2
    err = capfd.readouterr().err
    assert "storage_options: Input should be a valid dictionary" in err
    assert not [s for s in SECRETS if s in err]


def test_stage_repr_hides_storage_options():
    shown = repr(Ingest({"storage_options": {"key": "AKIDEXAMPLEKEY77"}}))
    assert "AKIDEXAMPLEKEY77" not in shown and '"storage_options": {"key": "<redacted>"}' in shown


def test_an_unreachable_input_url_is_recorded_and_the_run_goes_on(fixtures, tmp_path, capfd):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    shutil.copy(fixtures / "pdf" / "aastex63_sample_article.pdf", pdfs / "a.pdf")
    url = f"http://127.0.0.1:{port}/pdfs/"
    manifest = run_recipe(Recipe(steps=[Step(stage="ingest", config={"pdfs": [str(pdfs), url]})],
                                 executor=ExecutorConfig(tasks=1, quiet=True)), tmp_path / "out")
    assert {e.path: e.sha256 for e in manifest.inputs}[url] == "unavailable"
    assert f"input {url} cannot be read" in capfd.readouterr().err
    rows = read_polars(tmp_path / "out" / "decisions/ingest.parquet", DECISION)
    assert rows.filter(rows["item_id"] == url)["reason"].to_list() == ["location_unavailable"]
