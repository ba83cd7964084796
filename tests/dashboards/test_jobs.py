"""The jobs page against a live server: the queue, a job's log, the runners, cancelling."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlmodel import Session

from service import crud
from service.local import LocalRegistry
from service.models import JobCreate
from tests.dashboards.conftest import csrf_of, login
from tests.dashboards.seed import Seeded
from tests.helpers import start_server


def _row(html: str, job_id: int) -> str:
    """Return the HTML of a job's row in the jobs table."""
    found = re.search(rf'<tr id="job-{job_id}">(.*?)</tr>', html, re.S)
    assert found, f"job {job_id} is not listed"
    return found.group(1)


def test_lists_jobs_with_status_run_and_failure_reason(
    reader: httpx.Client, seeded: Seeded
) -> None:
    good, bad, queued = seeded.job_ids
    page = reader.get("/jobs")
    assert page.status_code == 200
    assert "<h1>Jobs and runners</h1>" in page.text
    assert re.search(r"\b1 queued\b", page.text) and re.search(r"\b1 failed\b", page.text)
    good_row = _row(page.text, good)
    assert ">succeeded<" in good_row
    assert f'href="/runs/{seeded.runs["good"].id}"' in good_row
    assert seeded.runs["good"].name in good_row
    assert "a100" in good_row
    assert seeded.runner_name in good_row  # who ran it, after the job ended
    bad_row = _row(page.text, bad)
    assert ">failed<" in bad_row and "CUDA out of memory at step 3" in bad_row
    queued_row = _row(page.text, queued)
    assert ">queued<" in queued_row and ">eval<" in queued_row
    # newest first
    assert page.text.index(f'id="job-{queued}"') < page.text.index(f'id="job-{good}"')


def test_lists_runner_with_heartbeat(reader: httpx.Client, seeded: Seeded) -> None:
    page = reader.get("/jobs")
    runners = page.text[page.text.index('<table id="runners">') :]
    row = re.search(rf"<tr>\s*<td>{re.escape(seeded.runner_name)}</td>(.*?)</tr>", runners, re.S)
    assert row, "the runner is not listed"
    assert ">idle<" in row.group(1)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC <small>\(\d+ (s|min) ago\)", row.group(1))


def test_status_and_kind_filters(reader: httpx.Client, seeded: Seeded) -> None:
    good, bad, queued = seeded.job_ids
    failed = reader.get("/jobs", params={"status": "failed"}).text
    assert f'id="job-{bad}"' in failed
    assert f'id="job-{good}"' not in failed and f'id="job-{queued}"' not in failed
    assert '<option value="failed" selected>' in failed
    evals = reader.get("/jobs", params={"kind": "eval"}).text
    assert f'id="job-{queued}"' in evals and f'id="job-{bad}"' not in evals
    nothing = reader.get("/jobs", params={"status": "running"}).text
    assert "No jobs match the filter." in nothing


def test_unknown_filter_value_is_named_on_the_page(reader: httpx.Client, seeded: Seeded) -> None:
    page = reader.get("/jobs", params={"status": "faild"})
    assert page.status_code == 400
    assert "Unknown job status &#39;faild&#39;. Did you mean &#39;failed&#39;?" in page.text
    assert f'id="job-{seeded.job_ids[0]}"' in page.text  # the bad filter filters nothing


def test_job_page_shows_facts_spec_and_log(reader: httpx.Client, seeded: Seeded) -> None:
    good, bad, queued = seeded.job_ids
    page = reader.get(f"/jobs/{good}")
    assert page.status_code == 200
    assert f"<h1>Job {good}</h1>" in page.text
    assert "step 10 loss 1.52\nstep 20 loss 1.21\ndone\n" in page.text
    assert "name: x" in page.text
    assert seeded.runs["good"].name in page.text
    failed = reader.get(f"/jobs/{bad}").text
    assert "CUDA out of memory at step 3" in failed and "No log lines yet." in failed
    payload = reader.get(f"/jobs/{queued}").text
    assert "&#34;checkpoint_ids&#34;: [\n    1\n  ]" in payload


def test_unknown_job_is_a_404_page(reader: httpx.Client, seeded: Seeded) -> None:
    page = reader.get("/jobs/999999")
    assert page.status_code == 404
    assert "job 999999 not found" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_reader_sees_no_cancel_button_and_cannot_cancel(
    reader: httpx.Client, seeded: Seeded
) -> None:
    queued = seeded.job_ids[2]
    page = reader.get("/jobs")
    assert "/cancel" not in page.text
    response = reader.post(f"/jobs/{queued}/cancel", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 403
    assert "scope write" in response.text
    assert ">queued<" in _row(reader.get("/jobs").text, queued)


def test_cancel_without_csrf_is_refused(writer: httpx.Client, seeded: Seeded) -> None:
    queued = seeded.job_ids[2]
    response = writer.post(f"/jobs/{queued}/cancel", data={})
    assert response.status_code == 403
    assert "CSRF" in response.text
    wrong = writer.post(f"/jobs/{queued}/cancel", data={"csrf_token": "x" * 43})
    assert wrong.status_code == 403
    assert ">queued<" in _row(writer.get("/jobs").text, queued)


def test_writer_cancels_the_queued_job(writer: httpx.Client, seeded: Seeded) -> None:
    good, _, queued = seeded.job_ids
    page = writer.get("/jobs")
    assert f'action="/jobs/{queued}/cancel"' in page.text
    assert f'action="/jobs/{good}/cancel"' not in page.text  # finished: nothing to cancel
    response = writer.post(f"/jobs/{queued}/cancel", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs"
    after = writer.get("/jobs").text
    row = _row(after, queued)
    assert ">cancelled<" in row and "/cancel" not in row
    assert re.search(r"\b1 cancelled\b", after)
    # cancelling a finished job is explained, not a crash
    again = writer.post(f"/jobs/{good}/cancel", data={"csrf_token": csrf_of(after)})
    assert again.status_code == 409
    assert "already succeeded" in again.text


def test_fifty_jobs_per_page_with_filters_kept(tmp_path: Path) -> None:
    # Its own server: 51 more jobs would change the counts the other tests read.
    server = start_server(tmp_path / "home")
    try:
        registry = LocalRegistry(f"sqlite:///{server.home / 'evalctl.db'}")
        with Session(registry.engine) as session:
            job_in = JobCreate(kind="train", spec_text="x")
            ids = [crud.enqueue_job(session=session, job_in=job_in).id for _ in range(51)]
        with httpx.Client(base_url=server.url) as client:
            login(client, server.make_token("read"))
            first = client.get("/jobs", params={"kind": "train"}).text
            assert first.count('<tr id="job-') == 50
            assert f'id="job-{ids[-1]}"' in first and f'id="job-{ids[0]}"' not in first
            assert "Page 1 of 2" in first
            assert 'href="/jobs?kind=train&amp;page=2">Older</a>' in first
            second = client.get("/jobs", params={"kind": "train", "page": 2}).text
            assert second.count('<tr id="job-') == 1 and f'id="job-{ids[0]}"' in second
            assert 'href="/jobs?kind=train">Newer</a>' in second
            beyond = client.get("/jobs", params={"page": 10**30}).text
            assert "No jobs." in beyond
    finally:
        server.stop()
